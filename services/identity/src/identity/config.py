"""Identity settings (env prefix IDENTITY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from krika_common.config import DEV_PLACEHOLDER, KrikaSettings, service_config


class Settings(KrikaSettings):
    model_config = service_config("IDENTITY_")

    service_name: str = "identity"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika_identity"

    # The outbox worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9001

    # RS256 signing: the active private key (PEM) and older keys still published in the JWKS
    # so tokens they signed stay valid until they expire (rotation).
    signing_key_file: Path | None = None
    previous_key_files: list[Path] = Field(default_factory=list)
    # HMAC key for hashing refresh, verification and reset tokens at rest.
    token_pepper: str = DEV_PLACEHOLDER

    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 3600
    email_verification_ttl: int = 48 * 3600
    password_reset_ttl: int = 3600

    # Login throttling: failures allowed per window before 429.
    login_failures_per_account: int = 5
    login_failures_per_ip: int = 20
    login_failure_window: int = 15 * 60

    # argon2id cost (OWASP's minimum is m=19 MiB, t=2; these are a little above).
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 64 * 1024
    argon2_parallelism: int = 2

    def secret_fields(self) -> dict[str, str]:
        return {"token_pepper": self.token_pepper}

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.environment == "production" and self.signing_key_file is None:
            raise ValueError("production needs IDENTITY_SIGNING_KEY_FILE")
        return self
