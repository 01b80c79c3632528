"""Orders settings (env prefix ORDERS_)."""

from __future__ import annotations

import re

from pydantic import Field

from krika_common.config import MIB, KrikaSettings, StorageSettings, service_config

# The one route that takes a big body: a delivery attachment (DOCUMENTS.max_bytes) plus its
# multipart framing. Every other route keeps the 1 MiB default.
ATTACHMENT_UPLOAD_PATH = re.compile(r"^/orders/[^/]+/attachments$")

DAY = 24 * 3600.0


class Settings(StorageSettings, KrikaSettings):
    model_config = service_config("ORDERS_")

    service_name: str = "orders"
    port: int = 8003
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_orders"
    storage_url: str = "file:///var/lib/krika/orders"

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9003

    # Seconds an order may stay unpaid before the worker cancels it.
    unpaid_timeout: float = Field(default=1 * DAY, gt=0)
    # Seconds after a delivery without the customer acting before the worker completes it.
    auto_complete_after: float = Field(default=3 * DAY, gt=0)
    # How often the worker looks for due timers (seconds), and how many it fires per round.
    timer_poll_interval: float = Field(default=5.0, gt=0)
    timer_batch: int = Field(default=100, ge=1, le=1000)

    # Bytes allowed for an attachment upload request (the file plus multipart overhead).
    attachment_upload_body_bytes: int = Field(default=11 * MIB, ge=MIB)
    max_attachments_per_order: int = Field(default=50, ge=1, le=500)

    def secret_fields(self) -> dict[str, str]:
        return super().secret_fields() | self.storage_secrets()

    def body_limit_for(self, path: str) -> int:
        if ATTACHMENT_UPLOAD_PATH.match(path):
            return self.attachment_upload_body_bytes
        return self.http.body_limit(path)
