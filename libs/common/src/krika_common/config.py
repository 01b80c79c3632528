"""Settings base every service's Settings class extends (pydantic-settings, one env prefix each)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "dev-insecure-change-me"
MIB = 1024 * 1024


class HttpLimits(BaseModel):
    """What one HTTP server process accepts (`krika_common.server`). Env: `<P>HTTP` as JSON.

    The defaults suit a JSON API behind the gateway: a request's head (request line plus
    headers) fits in 16 KiB, as in nginx's and Node's defaults; bodies are JSON of at most
    1 MiB, except where `body_limits` names a bigger one for a path prefix (uploads).
    """

    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=10)
    # From the connection (or the first byte of a request) to the end of its headers.
    header_timeout: float = Field(default=10.0, gt=0)
    # A body in flight must bring at least `body_min_rate` bytes/s over each `body_window`
    # seconds (or end), unless the application itself is not reading: slow-body clients go.
    body_window: float = Field(default=10.0, gt=0)
    body_min_rate: int = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=1 * MIB, ge=1)
    # Path prefix (as the service sees it, e.g. "/kyc/submissions") -> bigger body limit.
    body_limits: dict[str, int] = Field(default_factory=dict)
    # Idle keep-alive connections are closed after this long (uvicorn's timeout_keep_alive).
    keepalive_timeout: int = Field(default=5, ge=1)
    # Requests being served at once; the next one is answered 503 `overloaded` at once.
    max_concurrency: int = Field(default=256, ge=1)
    # Open connections; the next one is closed at once.
    max_connections: int = Field(default=2048, ge=1)
    # Largest WebSocket message accepted.
    ws_max_message: int = Field(default=1 * MIB, ge=1024)

    def body_limit(self, path: str) -> int:
        for prefix, limit in self.body_limits.items():
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes


class KrikaSettings(BaseSettings):
    """Common knobs; a service subclasses it and sets `model_config = service_config("ORDERS_")`."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "krika"
    environment: Literal["development", "test", "production"] = "development"
    # Where `python -m <service>` listens (the worker has its own `worker_port`).
    host: str = "127.0.0.1"
    port: int = 8000
    http: HttpLimits = Field(default_factory=HttpLimits)
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/krika"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    events_exchange: str = "krika.events"
    # "quorum" on a clustered production broker (see EventBus).
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections to Redis a process opens at most (one per request in flight at worst: match
    # http.max_concurrency); a command beyond waits up to redis_timeout for a free one. Also the
    # connect and socket timeouts (seconds).
    redis_max_connections: int = Field(default=256, ge=1)
    redis_timeout: float = Field(default=5.0, gt=0)
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "krika-identity"
    jwt_audience: str = "krika"
    # The longest access-token lifetime identity issues: how long an access mark lives.
    access_token_max_ttl: int = 15 * 60
    # Shared by the gateway and the services: the gateway sends it on every proxied request
    # (`X-Krika-Edge`), and only a request carrying it may tell a service the client's IP,
    # request id and trace (see krika_common.edge).
    edge_secret: str = DEV_PLACEHOLDER
    log_level: str = "INFO"
    db_pool_size: int = 10
    # Published outbox rows and handled inbox rows are deleted after this many days.
    outbox_retention_days: float = Field(default=7.0, gt=0)
    inbox_retention_days: float = Field(default=30.0, gt=0)

    def secret_fields(self) -> dict[str, str]:
        """Secrets that must not keep their development default outside development.

        A service adds its own: `return super().secret_fields() | {"pepper": self.pepper}`.
        """
        return {"edge_secret": self.edge_secret}

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


def redact_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def service_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", env_file=None)


class StorageSettings(BaseSettings):
    """Where a service that keeps files keeps them (krika_common.storage). A mixin:
    `class Settings(StorageSettings, KrikaSettings)`, and add `storage_secrets()` to
    `secret_fields()`.

    `storage_url` is `file:///dir` (development: links signed with `file_link_secret`, served by
    the service) or `s3://bucket` (presigned links; credentials from the fields below, or the
    usual AWS_* variables / instance role when they are unset).
    """

    storage_url: str = "file:///var/lib/krika/files"
    file_link_secret: str = DEV_PLACEHOLDER
    # How long a download link works (capped at an hour by Storage).
    file_link_ttl: int = Field(default=600, ge=10, le=3600)
    storage_endpoint: str | None = None  # S3-compatible servers (MinIO, R2...)
    storage_region: str | None = None
    storage_access_key_id: str | None = None
    storage_secret_access_key: str | None = None
    storage_allow_http: bool = False  # only for a local S3 server in tests

    def storage_secrets(self) -> dict[str, str]:
        secrets = {}
        if self.storage_url.startswith("file:"):
            secrets["file_link_secret"] = self.file_link_secret
        return secrets

    def s3_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            name: value
            for name, value in (
                ("endpoint", self.storage_endpoint),
                ("region", self.storage_region),
                ("access_key_id", self.storage_access_key_id),
                ("secret_access_key", self.storage_secret_access_key),
            )
            if value is not None
        }
        if self.storage_allow_http:
            options["client_options"] = {"allow_http": True}
        if self.storage_endpoint is not None:
            options["virtual_hosted_style_request"] = False
        return options
