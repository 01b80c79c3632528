"""Notify settings (env prefix NOTIFY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from krika_common.config import DEV_PLACEHOLDER, KrikaSettings, service_config


class Settings(KrikaSettings):
    model_config = service_config("NOTIFY_")

    service_name: str = "notify"
    port: int = 8007
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_notify"

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9007

    # Links in messages: pages of the web app (`/orders/{id}`, `/verify-email?token=`...) and
    # the API's own unsubscribe route (through the gateway).
    public_url: str = "http://localhost:3000"
    api_public_url: str = "http://127.0.0.1:8000"

    # notify's link key (P-256 PEM, private): opens the one-time tokens identity seals into its
    # events (krika_common.events.sealed). Required outside development.
    link_key_file: Path | None = None
    # Signs the one-click unsubscribe links (HMAC-SHA256).
    unsubscribe_secret: str = DEV_PLACEHOLDER

    # --- SMTP
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    # "starttls": upgrade a plain connection (port 587); "tls": TLS from the start (465);
    # "none": plain (a local relay or the development mail catcher only).
    smtp_security: Literal["starttls", "tls", "none"] = "none"
    smtp_validate_certs: bool = True
    smtp_timeout: float = Field(default=15.0, gt=0)
    mail_from: str = "Krika <no-reply@krika.local>"
    # The domain of the Message-IDs we make.
    mail_domain: str = "krika.local"

    # --- the delivery queue
    # Messages sent at once by one worker, and claimed per round.
    send_concurrency: int = Field(default=4, ge=1, le=64)
    send_batch: int = Field(default=50, ge=1, le=1000)
    # A temporary failure (4xx, no connection) is retried after retry_base * 2^(attempts-1)
    # seconds, at most retry_max apart; after max_attempts the delivery is failed.
    retry_base: float = Field(default=30.0, gt=0)
    retry_max: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    # A claimed delivery not finished within this long (a worker that died) is claimed again.
    send_lease: float = Field(default=120.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)

    # Chat messages to an offline recipient: at most one e-mail per conversation this often.
    chat_digest_minutes: float = Field(default=15.0, gt=0)

    def secret_fields(self) -> dict[str, str]:
        secrets = {"unsubscribe_secret": self.unsubscribe_secret}
        if self.smtp_username:  # a login: its password must be a real one
            secrets["smtp_password"] = self.smtp_password or ""
        return super().secret_fields() | secrets

    @model_validator(mode="after")
    def _production_keys(self) -> Settings:
        if self.environment == "production" and self.link_key_file is None:
            raise ValueError("production needs NOTIFY_LINK_KEY_FILE")
        return self
