"""Ledger settings (env prefix LEDGER_)."""

from __future__ import annotations

from pydantic import Field

from krika_common.config import KrikaSettings, service_config


class Settings(KrikaSettings):
    model_config = service_config("LEDGER_")

    service_name: str = "ledger"
    port: int = 8005
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_ledger"

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9005

    # The platform's commission in basis points of an order's price (1000 = 10 %), rounded
    # half up to the minor unit; the provider is credited the rest.
    commission_bps: int = Field(default=1000, ge=0, le=10_000)
    # The platform currency: GET /wallet always shows it, with zeros.
    currency: str = Field(default="NGN", min_length=3, max_length=3)
    # The smallest withdrawal, in minor units (₦1,000.00).
    min_withdrawal: int = Field(default=100_000, ge=1)

    # Parked events (they could not apply yet: a completion before its payment...) are tried
    # again after every posting on the same order or withdrawal, and by the worker every
    # `parked_retry_base * 2^attempts` seconds, at most `parked_retry_max` apart.
    parked_retry_base: float = Field(default=5.0, gt=0)
    parked_retry_max: float = Field(default=600.0, gt=0)
    # How often the worker runs the invariants check (its result is a metric).
    invariants_interval: float = Field(default=60.0, gt=0)
    poll_interval: float = Field(default=2.0, gt=0)
