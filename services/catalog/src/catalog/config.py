"""Catalog settings (env prefix CATALOG_)."""

from __future__ import annotations

import re

from pydantic import Field

from krika_common.config import MIB, KrikaSettings, StorageSettings, service_config

# The one route that takes a big body: a gallery image (IMAGES.max_bytes) plus its multipart
# framing. Every other route keeps the 1 MiB default.
MEDIA_UPLOAD_PATH = re.compile(r"^/catalog/services/[^/]+/media$")


class Settings(StorageSettings, KrikaSettings):
    model_config = service_config("CATALOG_")

    service_name: str = "catalog"
    port: int = 8002
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_catalog"
    storage_url: str = "file:///var/lib/krika/catalog"

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9002

    # Bytes allowed for a media upload request (the image plus multipart overhead).
    media_upload_body_bytes: int = Field(default=11 * MIB, ge=MIB)
    # Redis caches of the public representations (seconds). Writes invalidate at once; the
    # TTL only bounds what a write made while Redis was unreachable can leave behind.
    service_cache_ttl: int = Field(default=300, ge=1)
    categories_cache_ttl: int = Field(default=3600, ge=1)
    # A cache call that takes longer than this counts as a miss (the database answers).
    cache_timeout: float = Field(default=0.25, gt=0)

    max_media_per_service: int = Field(default=10, ge=1, le=50)
    max_categories: int = Field(default=1000, ge=1)

    def secret_fields(self) -> dict[str, str]:
        return super().secret_fields() | self.storage_secrets()

    def body_limit_for(self, path: str) -> int:
        if MEDIA_UPLOAD_PATH.match(path):
            return self.media_upload_body_bytes
        return self.http.body_limit(path)
