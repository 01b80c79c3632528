"""The gateway's shared core: its clients (upstreams, Redis, JWKS), and admission - the one code
path that decides whether an HTTP request or a WebSocket may pass (gateway.proxy,
gateway.websocket).

Admission: the credentials must be unambiguous (one Authorization header; for a WebSocket,
the header or the `access_token` query, not two different tokens); a private route needs a
valid access token (RS256 against identity's JWKS, verified once and remembered); the token
must not predate an access change (identity's access marks, krika_common.access); and the
client's IP and user must be within the route group's rate limits. The IP is the TCP peer's,
or, from a trusted proxy, the right-most address in X-Forwarded-For that is not a proxy.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import httpx
from prometheus_client import Counter
from starlette.types import Scope

from gateway.config import RateLimit, Settings
from gateway.ratelimit import RateLimiter, connect_redis
from gateway.routes import REALTIME_GROUP, ROUTE_GROUPS, PublicRoutes
from gateway.upstream import Upstream, httpx_client
from krika_common.access import AccountSuspended, TokenRevoked, refusal
from krika_common.auth import (
    AmbiguousCredentials,
    InvalidToken,
    JWKSClient,
    Principal,
    TokenExpired,
    TokenVerifier,
    parse_bearer,
)
from krika_common.edge import CLIENT_IP_HEADER, EDGE_HEADER
from krika_common.errors import (
    BadRequest,
    Overloaded,
    ServiceError,
    TooManyRequests,
    Unauthorized,
)
from krika_common.telemetry import (
    new_traceparent,
    trace_id_from_traceparent,
    trace_id_var,
    tracing_enabled,
)

TOKEN_VERIFICATIONS = Counter(
    "gateway_token_verifications_total",
    "Access tokens verified by signature (not found in the verified-token cache)",
)


class RateLimited(TooManyRequests):
    code = "rate_limited"
    message = "Too many requests"


class PathNotAllowed(BadRequest):
    code = "bad_request"
    message = "Path not allowed (dot segments, empty segments, encoded slashes or dots)"


class UpstreamDown(ServiceError):
    status = 502
    code = "upstream_unavailable"
    message = "The service behind this route is unavailable"


class UpstreamTooSlow(ServiceError):
    status = 504
    code = "upstream_timeout"
    message = "The service behind this route did not answer in time"


# Every answer the gateway itself may give on a proxied route (documented in the merged docs),
# and on a route that needs a token.
GATEWAY_ANSWERS: tuple[type[ServiceError], ...] = (
    PathNotAllowed,
    AmbiguousCredentials,
    RateLimited,
    Overloaded,
    UpstreamDown,
    UpstreamTooSlow,
)
TOKEN_ANSWERS: tuple[type[ServiceError], ...] = (
    Unauthorized,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    AccountSuspended,
)


def outgoing_traceparent(incoming: bytes | None) -> bytes:
    """The traceparent for the upstream: the gateway's own span when tracing is on (so the
    services' spans hang under it), else the caller's when well-formed (only a trusted proxy's
    reaches here: telemetry drops the others'), else a new trace."""
    if tracing_enabled():
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if "traceparent" in carrier:
            return carrier["traceparent"].encode()
    if incoming is not None and trace_id_from_traceparent(incoming.decode("latin-1")):
        return incoming
    minted = new_traceparent()
    trace_id_var.set(minted[3:35])
    return minted.encode()


class TrustedProxies:
    """Which peers may tell us the client's address (X-Forwarded-For)."""

    def __init__(self, entries: list[str]) -> None:
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def client_of(self, peer: str, forwarded_for: str | None) -> str:
        """The right-most address not ours: a trusted peer's X-Forwarded-For, else the peer."""
        if not forwarded_for or peer not in self:
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else peer

    def trusts(self, scope: Scope) -> bool:
        """For telemetry: the request comes from a trusted proxy (its request id counts)."""
        client = scope.get("client")
        return bool(self) and client is not None and client[0] in self


class VerifiedTokens:
    """Access tokens already verified, remembered until they expire.

    Verifying an RS256 token costs more than the rest of the hot path; a client sends the same
    token for its whole lifetime. Only successes are kept, `exp` is checked on every hit, and
    the entries signed by a key are dropped when a JWKS fetch no longer lists that key, so a
    key identity withdraws stops being trusted at the next refresh. Access marks are checked
    per request in Redis.
    """

    def __init__(self, verifier: TokenVerifier, max_size: int = 10_000) -> None:
        self._verifier = verifier
        self._max_size = max_size
        self._principals: dict[str, tuple[Principal, str]] = {}

    async def verify(self, token: str) -> Principal:
        hit = self._principals.get(token)
        if hit is not None and time.time() < hit[0].expires_at:
            return hit[0]
        TOKEN_VERIFICATIONS.inc()
        principal = await self._verifier.verify(token)
        if self._max_size > 0:
            if len(self._principals) >= self._max_size:
                del self._principals[next(iter(self._principals))]
            self._principals[token] = (principal, principal.key_id)
        return principal

    def forget_keys(self, kids: set[str]) -> None:
        """Drop the tokens signed by any of `kids` (keys identity no longer publishes)."""
        if kids:
            self._principals = {t: p for t, p in self._principals.items() if p[1] not in kids}

    def __len__(self) -> int:
        return len(self._principals)


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let through: who (None on a public route) and the hop headers to add."""

    principal: Principal | None
    client_ip: str
    hop_headers: list[tuple[bytes, bytes]]


class Gateway:
    """The upstream pool, the token verifier and the rate limiter: opened in the lifespan."""

    http: httpx.AsyncClient  # JWKS, API docs
    upstream: Upstream  # the proxied requests
    jwks: JWKSClient
    verifier: TokenVerifier
    tokens: VerifiedTokens
    limiter: RateLimiter

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.public = PublicRoutes()
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.jwks_fetches = 0
        self._known_kids: set[str] = set()
        self._edge = settings.edge_secret.encode()
        self._origins = {name: url.rstrip("/") for name, url in settings.service_urls().items()}
        self._bases = {name: httpx.URL(url) for name, url in self._origins.items()}
        self._limits: dict[str, RateLimit] = {
            group.name: settings.rate_limit_for(group.name) for group in ROUTE_GROUPS.values()
        }
        self._limits[REALTIME_GROUP] = settings.rate_limit_for(REALTIME_GROUP)

    async def open(self) -> None:
        s = self.settings
        self.http = httpx_client(s)
        self.upstream = Upstream(s)
        self.redis = connect_redis(s.redis_url, s.redis_timeout)
        self.jwks = JWKSClient(
            s.jwks_url,
            self.http,
            refetch_cooldown=s.jwks_refetch_cooldown,
            on_fetch=self._fetched,
        )
        self.verifier = TokenVerifier(self.jwks, issuer=s.jwt_issuer, audience=s.jwt_audience)
        self.tokens = VerifiedTokens(self.verifier, s.verified_token_cache_size)
        self.limiter = RateLimiter(self.redis, retry_after_failure=s.redis_retry_after)

    async def aclose(self) -> None:
        await self.upstream.aclose()
        await self.http.aclose()
        await self.redis.aclose()

    async def _fetched(self) -> None:
        self.jwks_fetches += 1
        kids = self.jwks.kids()
        # An unknown kid refetches the JWKS; only keys that disappeared invalidate tokens.
        self.tokens.forget_keys(self._known_kids - kids)
        self._known_kids = kids

    def base_url(self, service: str) -> httpx.URL:
        return self._bases[service]

    def origin(self, service: str) -> str:
        return self._origins[service]

    def rate_limit(self, group: str) -> RateLimit:
        return self._limits[group]

    async def authenticate(self, authorization: bytes | None) -> Principal:
        token = parse_bearer(authorization)
        if token is None:
            raise Unauthorized("Missing bearer token")
        return await self.tokens.verify(token)

    def forwarded(
        self,
        scope: Scope,
        xff: bytes | None,
        proto: bytes | None,
        host: bytes | None,
        fwd_host: bytes | None,
    ) -> tuple[str, list[tuple[bytes, bytes]]]:
        """The client's IP, and the headers that tell the upstream about the hop: X-Forwarded-*
        (informative) and the gateway's secret with the client IP (what services believe)."""
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if self.trusted and peer in self.trusted:
            chain = xff.decode("latin-1") if xff else None
            ip = self.trusted.client_of(peer, chain)
            out_xff = f"{chain}, {peer}" if chain else peer
            out_proto = proto or scope["scheme"].encode()
            out_host = fwd_host or host
        else:
            ip = out_xff = peer
            out_proto = scope["scheme"].encode()
            out_host = host
        headers = [
            (b"x-forwarded-for", out_xff.encode()),
            (b"x-forwarded-proto", out_proto),
            (EDGE_HEADER, self._edge),
            (CLIENT_IP_HEADER, ip.encode()),
        ]
        if out_host:
            headers.append((b"x-forwarded-host", out_host))
        return ip, headers

    async def admit(
        self,
        scope: Scope,
        group: str,
        authorizations: list[bytes],
        *,
        public: bool,
        xff: bytes | None = None,
        proto: bytes | None = None,
        host: bytes | None = None,
        fwd_host: bytes | None = None,
    ) -> Admission:
        """Let the request through, or raise the ServiceError to answer with."""
        if len(authorizations) > 1:
            raise AmbiguousCredentials()
        principal = None
        if not public:
            principal = await self.authenticate(authorizations[0] if authorizations else None)
        client_ip, hop_headers = self.forwarded(scope, xff, proto, host, fwd_host)
        user_id = str(principal.id) if principal is not None else None
        verdict = await self.limiter.check(group, self.rate_limit(group), client_ip, user_id)
        if principal is not None:
            error: ServiceError | None = refusal(
                verdict.mark_version, verdict.suspended, principal.token_version
            )
            if error is not None:
                raise error
        if verdict.retry_after:
            raise RateLimited(verdict.retry_after)
        return Admission(principal, client_ip, hop_headers)
