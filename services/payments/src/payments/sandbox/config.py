"""Paystack sandbox settings (env prefix PAYSTACK_SANDBOX_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The sandbox's fixed test keys: what payments uses in development and tests. They only ever
# open this local emulation, never Paystack.
DEFAULT_SECRET_KEY = "sk_test_krika0sandbox0b7f3c2e9d4a61f8e05c3d2b1a0"  # noqa: S105
DEFAULT_PUBLIC_KEY = "pk_test_krika0sandbox0a4e9b1c7d2f5083e6a9c4d1b7"


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYSTACK_SANDBOX_", extra="ignore")

    # repr=False: the key never shows in a log line or a traceback of the settings.
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, repr=False)
    public_key: str = DEFAULT_PUBLIC_KEY
    # SQLite (aiosqlite) by default, relative to the working directory; PostgreSQL
    # (postgresql+asyncpg://...) works too.
    database_url: str = "sqlite+aiosqlite:///.local/paystack-sandbox.db"
    # Base of `authorization_url` (the checkout page).
    public_url: str = "http://127.0.0.1:8010"
    # Where events are POSTed; None: kept (pending) until one is set with PUT /_sandbox/config.
    webhook_url: str | None = None
    webhook_timeout: float = Field(default=10.0, gt=0)
    # Retry n waits webhook_retry_base * 2**(n-1) seconds, at most webhook_retry_max_delay.
    webhook_retry_base: float = Field(default=1.0, ge=0)
    webhook_retry_max_delay: float = Field(default=60.0, ge=0)
    webhook_max_attempts: int = Field(default=10, ge=1)
    # Delay before an asynchronous transfer or refund reaches its outcome.
    settle_after: float = Field(default=1.0, ge=0)
    # How long a forced "timeout" fault holds the answer.
    timeout_seconds: float = Field(default=30.0, ge=0)
    # The initial transfer balance, in kobo.
    balance: int = Field(default=1_000_000_000_00, ge=0)
    host: str = "127.0.0.1"
    port: int = 8010
