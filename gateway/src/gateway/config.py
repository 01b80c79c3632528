"""Gateway settings (env prefix GATEWAY_)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from starlette.types import Scope

from gateway.routes import REALTIME_GROUP, SERVICE_OF_GROUP
from krika_common.config import MIB, HttpLimits, KrikaSettings, service_config


class RateLimit(BaseModel):
    """Requests allowed per `window` seconds; `None` switches that key off."""

    per_user: int | None = Field(default=600, ge=1)
    per_ip: int | None = Field(default=1200, ge=1)
    window: int = Field(default=60, ge=1)


def _default_rate_limits() -> dict[str, RateLimit]:
    # Sign-in, sign-up and password reset are the brute-force targets: few tries per address.
    return {"auth": RateLimit(per_user=None, per_ip=30, window=60)}


def _default_body_limits() -> dict[str, int]:
    # The route groups with uploads (KYC documents, service media, deliveries, attachments);
    # each service applies its own, finer limits per route.
    # KYC: three files of 10 MiB and the form around them.
    return {"kyc": 31 * MIB, "catalog": 30 * MIB, "orders": 30 * MIB, "chat": 30 * MIB}


def _gateway_http_limits() -> HttpLimits:
    # The edge holds every client's connection: more of them than a service behind it.
    return HttpLimits(max_concurrency=2048, max_connections=10_000)


class Settings(KrikaSettings):
    model_config = service_config("GATEWAY_")

    service_name: str = "gateway"
    port: int = 8000
    http: HttpLimits = Field(default_factory=_gateway_http_limits)
    # The internal listener for /readyz and /metrics (Prometheus, health checks); never
    # published. The public port serves neither.
    ops_port: int = 9000
    # Request body limit per route group (first segment after /api/v1); others get
    # `http.max_body_bytes` (1 MiB).
    body_limits: dict[str, int] = Field(default_factory=_default_body_limits)

    identity_url: str = "http://127.0.0.1:8001"
    catalog_url: str = "http://127.0.0.1:8002"
    orders_url: str = "http://127.0.0.1:8003"
    payments_url: str = "http://127.0.0.1:8004"
    ledger_url: str = "http://127.0.0.1:8005"
    chat_url: str = "http://127.0.0.1:8006"
    notify_url: str = "http://127.0.0.1:8007"

    # Upstream HTTP: whole-exchange read/write timeout, and a short connect timeout so a dead
    # replica answers 502/504 fast.
    upstream_timeout: float = 30.0
    upstream_connect_timeout: float = 2.0
    upstream_max_connections: int = 512
    upstream_max_keepalive: int = 128
    # Below uvicorn's default keep-alive (5 s) so we never reuse a socket the upstream closes.
    upstream_keepalive_expiry: float = 4.0

    # JWKS: fetched lazily, refetched on an unknown `kid` at most once per cooldown, and
    # refreshed in the background so keys withdrawn by identity stop being trusted.
    jwks_refetch_cooldown: float = 5.0
    jwks_refresh_interval: float = 300.0
    # Verified tokens remembered until their `exp` (dropped on every JWKS fetch); 0 = off.
    verified_token_cache_size: int = 10_000

    # Rate limits per route group (the first path segment after /api/v1, or "realtime" for
    # the Socket.IO connection); groups not listed use `rate_limit_default`.
    rate_limit_default: RateLimit = RateLimit()
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)
    # Redis is skipped for this long after it failed (requests fail open meanwhile).
    redis_retry_after: float = 1.0
    redis_timeout: float = 0.25

    # Peers (IPs or CIDRs) whose X-Forwarded-For/-Proto/-Host we believe. Empty: the socket
    # peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)

    # Consume identity's access changes from the events exchange (gateway.events).
    consume_events: bool = True

    # The JSON access line per request (krika_common.telemetry). About a quarter of the
    # gateway's CPU per proxied request (bench/README.md): off where the load balancer logs.
    access_log: bool = True

    # Freeze startup objects and collect young garbage less often (see gateway.app._tune_gc).
    tune_gc: bool = True

    # Merged API docs.
    docs_fetch_timeout: float = 2.0
    docs_cache_ttl: float = 30.0

    @field_validator("rate_limits")
    @classmethod
    def _known_groups(cls, limits: dict[str, RateLimit]) -> dict[str, RateLimit]:
        # A misspelt (or renamed: "ws" became "realtime") group would silently get the default.
        unknown = sorted(set(limits) - {*SERVICE_OF_GROUP, REALTIME_GROUP})
        if unknown:
            known = ", ".join([*SERVICE_OF_GROUP, REALTIME_GROUP])
            raise ValueError(f"unknown rate-limit groups {unknown}; the groups are: {known}")
        return limits

    def service_urls(self) -> dict[str, str]:
        return {
            "identity": self.identity_url,
            "catalog": self.catalog_url,
            "orders": self.orders_url,
            "payments": self.payments_url,
            "ledger": self.ledger_url,
            "chat": self.chat_url,
            "notify": self.notify_url,
        }

    def rate_limit_for(self, group: str) -> RateLimit:
        return self.rate_limits.get(group, self.rate_limit_default)

    def body_limit_for(self, scope: Scope) -> int:
        path: str = scope["path"]
        if path.startswith("/api/v1/"):
            group = path[8:].partition("/")[0]
            return self.body_limits.get(group, self.http.max_body_bytes)
        return self.http.max_body_bytes
