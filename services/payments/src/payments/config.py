"""Payments settings (env prefix PAYMENTS_)."""

from __future__ import annotations

from pydantic import Field

from krika_common.config import DEV_PLACEHOLDER, KrikaSettings, service_config

KIB = 1024
MINUTE = 60.0
HOUR = 3600.0


class Settings(KrikaSettings):
    model_config = service_config("PAYMENTS_")

    service_name: str = "payments"
    port: int = 8004
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_payments"

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9004

    # Paystack (or the sandbox: `make up` points this at it). The secret key authenticates
    # our calls and signs Paystack's webhooks; it is never logged.
    paystack_base_url: str = "https://api.paystack.co"
    paystack_secret_key: str = DEV_PLACEHOLDER
    # Seconds to connect to Paystack, and for a whole call.
    paystack_connect_timeout: float = Field(default=5.0, gt=0)
    paystack_timeout: float = Field(default=15.0, gt=0)
    # Where Paystack sends the customer after paying (`{order_id}` is replaced); none: Paystack's
    # own receipt page.
    checkout_callback_url: str | None = None
    # Currency of payout accounts (Paystack NUBAN recipients).
    payout_currency: str = Field(default="NGN", min_length=3, max_length=3)
    # Seconds the bank list is kept in memory.
    banks_ttl: float = Field(default=1 * HOUR, gt=0)

    # Webhook bodies: Paystack's are a few KiB.
    webhook_body_bytes: int = Field(default=256 * KIB, ge=16 * KIB)
    # Webhooks that could not be processed (Paystack unreachable for verify) are retried after
    # webhook_retry_base * 2^attempt seconds, at most webhook_retry_max apart.
    webhook_retry_base: float = Field(default=2.0, gt=0)
    webhook_retry_max: float = Field(default=10 * MINUTE, gt=0)

    # Reconciliation: a payment still pending this long after checkout is verified with
    # Paystack (its webhook may be lost), then again at growing intervals (doubling, at most
    # reconcile_max_interval apart) until reconcile_give_up after checkout.
    reconcile_after: float = Field(default=10 * MINUTE, gt=0)
    reconcile_max_interval: float = Field(default=1 * HOUR, gt=0)
    reconcile_give_up: float = Field(default=72 * HOUR, gt=0)
    # Refunds and payouts waiting for Paystack are checked this often at first (doubling, at
    # most reconcile_max_interval apart).
    followup_after: float = Field(default=1 * MINUTE, gt=0)
    # How often the worker looks for due work, and how many rows it takes per round.
    poll_interval: float = Field(default=2.0, gt=0)
    batch: int = Field(default=50, ge=1, le=500)

    def secret_fields(self) -> dict[str, str]:
        return super().secret_fields() | {"paystack_secret_key": self.paystack_secret_key}

    def body_limit_for(self, path: str) -> int:
        if path == "/payments/webhooks/paystack":
            return self.webhook_body_bytes
        return self.http.body_limit(path)
