"""Settings base every service's Settings class extends (pydantic-settings, one env prefix each)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "dev-insecure-change-me"


class KrikaSettings(BaseSettings):
    """Common knobs; a service subclasses it and sets `model_config = service_config("ORDERS_")`."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "krika"
    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    events_exchange: str = "krika.events"
    # "quorum" on a clustered production broker (see EventBus).
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    redis_url: str = "redis://127.0.0.1:6379/0"
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "krika-identity"
    jwt_audience: str = "krika"
    log_level: str = "INFO"
    db_pool_size: int = 10

    def secret_fields(self) -> dict[str, str]:
        """Secrets that must not keep their development default outside development."""
        return {}

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> KrikaSettings:
        if self.environment != "development":
            weak = [
                name
                for name, value in self.secret_fields().items()
                if value in ("", DEV_PLACEHOLDER)
            ]
            if weak:
                raise ValueError(f"{self.environment} refuses default secrets: {', '.join(weak)}")
        return self


def service_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_file=None)
