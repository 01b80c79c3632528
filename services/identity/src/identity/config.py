"""Identity settings (env prefix IDENTITY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from krika_common.config import DEV_PLACEHOLDER, MIB, KrikaSettings, StorageSettings, service_config


class Settings(StorageSettings, KrikaSettings):
    model_config = service_config("IDENTITY_")

    service_name: str = "identity"
    port: int = 8001
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
    # notify's link key (P-256 PEM; its public half is enough here): the one-time tokens in
    # identity's events are sealed with it (krika_common.events.sealed).
    link_key_file: Path | None = None

    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 3600
    # A spent refresh token presented again within this many seconds (a lost response, two
    # tabs) gets the same successor instead of revoking the session.
    refresh_reuse_grace: int = Field(default=30, ge=0, le=300)
    email_verification_ttl: int = 48 * 3600
    password_reset_ttl: int = 3600

    # Login throttling (identity.throttle): attempts allowed per window before 429.
    # Per account from one IP: the owner's own device is only ever locked by itself.
    login_attempts_per_account_ip: int = 5
    # Per account from IPs that never signed in to it: slower, catches distributed guessing.
    login_attempts_per_account: int = 50
    # Per IP, whatever the account: credential stuffing.
    login_attempts_per_ip: int = 20
    login_window: int = 15 * 60
    # An IP that signed in to an account is "known" to it for this long.
    login_known_ip_ttl: int = 30 * 24 * 3600
    # Reset e-mails one account can be sent per window (mail bombing).
    password_resets_per_account: int = 3
    password_reset_window: int = 3600

    # argon2id cost (OWASP's minimum is m=19 MiB, t=2; these are a little above).
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 64 * 1024
    argon2_parallelism: int = 2
    # Memory argon2 may use at once: hashes run at most budget / memory_cost at a time; more
    # wait (at most `password_hash_queue` of them, each at most `password_hash_wait` seconds),
    # the rest are answered 503 `busy` with Retry-After.
    password_hash_memory_budget: int = 192 * 1024  # KiB
    password_hash_queue: int = 32
    password_hash_wait: float = 5.0

    # KYC: a provider must be at least this old.
    kyc_minimum_age: int = Field(default=18, ge=0)
    # The body of `POST /kyc/submissions` (only that route): three files of at most 10 MiB
    # each, the form's fields and its boundaries. Every other route keeps `http`'s 1 MiB.
    kyc_body_limit: int = Field(default=31 * MIB, ge=MIB)

    def secret_fields(self) -> dict[str, str]:
        return (
            super().secret_fields() | self.storage_secrets() | {"token_pepper": self.token_pepper}
        )

    @property
    def password_hash_concurrency(self) -> int:
        return max(1, self.password_hash_memory_budget // self.argon2_memory_cost)

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.environment == "production":
            if self.signing_key_file is None:
                raise ValueError("production needs IDENTITY_SIGNING_KEY_FILE")
            if self.link_key_file is None:
                raise ValueError("production needs IDENTITY_LINK_KEY_FILE")
        return self
