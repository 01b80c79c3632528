"""The proxy hot path: a plain ASGI middleware in front of the gateway's own FastAPI routes.

For `/api/v1/<group>/...` it checks the path, verifies the access token (unless the route is
on the exact public list), applies the rate limits and the suspension list, rewrites the
headers and streams the request to the upstream and the response back. No FastAPI routing or
dependency injection runs per proxied request; everything per-request is in `handle_http`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import RateLimit, Settings
from gateway.ratelimit import RateLimiter, connect_redis
from gateway.routes import ROUTE_GROUPS, BadPath, PublicRoutes, api_segments
from gateway.upstream import (
    AiohttpUpstream,
    Body,
    HttpxUpstream,
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    httpx_client,
)
from krika_common.auth import JWKSClient, Principal, TokenVerifier
from krika_common.errors import ServiceError, Unauthorized
from krika_common.telemetry import (
    trace_id_from_traceparent,
    trace_id_var,
    tracing_enabled,
    user_id_var,
)

log = logging.getLogger("gateway.proxy")

# Never forwarded in either direction (RFC 9110 §7.6.1 plus the usual non-standard ones).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers the gateway sets itself (a client's copy is never believed).
_REPLACED = frozenset(
    {
        b"host",
        b"x-user-id",
        b"x-user-roles",
        b"x-request-id",
        b"traceparent",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-real-ip",
        # uvicorn answers `Expect: 100-continue` itself when we read the body.
        b"expect",
    }
)
_REQUEST_DROP = HOP_BY_HOP | _REPLACED
# uvicorn adds its own.
_RESPONSE_DROP = HOP_BY_HOP | {b"server", b"date"}
_SMALL_BODY = 64 * 1024
_JSON = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


async def send_error(
    send: Send,
    status: int,
    code: str,
    detail: Any,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_headers(exc: ServiceError) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]


def _bearer(value: bytes | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_issued_at(principal: Principal) -> int | None:
    iat = principal.claims.get("iat")
    return int(iat) if isinstance(iat, int | float) else None


def outgoing_traceparent(incoming: bytes | None) -> bytes:
    """The traceparent for the upstream: the gateway's own span when tracing is on (so the
    services' spans hang under it), else the client's when well-formed, else a new trace."""
    if tracing_enabled():
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if "traceparent" in carrier:
            return carrier["traceparent"].encode()
    if incoming is not None and trace_id_from_traceparent(incoming.decode("latin-1")):
        return incoming
    minted = mint_traceparent()
    trace_id_var.set(minted[3:35])
    return minted.encode()


def mint_traceparent() -> str:
    ids = os.urandom(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-01"


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


class VerifiedTokens:
    """Access tokens already verified, remembered until they expire.

    Verifying an RS256 token costs more than the rest of the hot path; a client sends the same
    token for its whole lifetime. Only successes are kept, `exp` is checked on every hit, and
    the whole cache is dropped whenever the JWKS is (re)fetched, so a key identity withdraws
    stops being trusted at the next refresh. Suspensions are checked per request in Redis.
    """

    def __init__(self, verifier: TokenVerifier, max_size: int = 10_000) -> None:
        self._verifier = verifier
        self._max_size = max_size
        self._principals: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        principal = self._principals.get(token)
        if principal is not None and time.time() < principal.expires_at:
            return principal
        principal = await self._verifier.verify(token)
        if self._max_size > 0:
            if len(self._principals) >= self._max_size:
                del self._principals[next(iter(self._principals))]
            self._principals[token] = principal
        return principal

    def clear(self) -> None:
        self._principals.clear()


class Gateway:
    """The upstream pool, the token verifier and the rate limiter: opened in the lifespan."""

    http: httpx.AsyncClient  # JWKS, API docs
    upstream: UpstreamClient  # the proxied requests
    jwks: JWKSClient
    verifier: TokenVerifier
    tokens: VerifiedTokens
    limiter: RateLimiter

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.public = PublicRoutes()
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.jwks_fetches = 0
        self._origins = {name: url.rstrip("/") for name, url in settings.service_urls().items()}
        self._bases = {name: httpx.URL(url) for name, url in self._origins.items()}
        self._limits: dict[str, RateLimit] = {
            group.name: settings.rate_limit_for(group.name) for group in ROUTE_GROUPS.values()
        }
        self._limits["ws"] = settings.rate_limit_for("ws")

    async def open(self) -> None:
        s = self.settings
        self.http = httpx_client(s)
        self.upstream = (
            AiohttpUpstream(s) if s.upstream_client == "aiohttp" else HttpxUpstream(self.http)
        )
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
        self.tokens.clear()

    def base_url(self, service: str) -> httpx.URL:
        return self._bases[service]

    def origin(self, service: str) -> str:
        return self._origins[service]

    def rate_limit(self, group: str) -> RateLimit:
        return self._limits[group]

    async def authenticate(self, authorization: bytes | None) -> Principal:
        token = _bearer(authorization)
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
        """The client's IP and the X-Forwarded-* headers for the upstream."""
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
        headers = [(b"x-forwarded-for", out_xff.encode()), (b"x-forwarded-proto", out_proto)]
        if out_host:
            headers.append((b"x-forwarded-host", out_host))
        return ip, headers


class GatewayMiddleware:
    """`/api/v1/*` (HTTP) and `/ws` (WebSocket) are proxied; everything else is FastAPI's."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"].startswith("/api/v1/"):
            await handle_http(self.gateway, scope, receive, send)
        elif kind == "websocket" and scope["path"] == "/ws":
            from gateway.websocket import handle_websocket

            await handle_websocket(self.gateway, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def handle_http(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_path = raw_path.partition(b"?")[0]
    try:
        segments = api_segments(raw_path)
    except BadPath:
        await send_error(send, 400, "bad_request", "Path not allowed")
        return
    group = ROUTE_GROUPS.get(segments[0])
    if group is None:
        await send_error(send, 404, "not_found", "No such API")
        return
    scope["krika.route"] = group.label

    # One pass over the request headers: keep what is forwarded, note what we need.
    forward: list[tuple[bytes, bytes]] = []
    authorization = host = xff = xfp = xfh = traceparent = connection = None
    content_length: bytes | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif name == b"x-forwarded-proto":
                xfp = value
            elif name == b"x-forwarded-host":
                xfh = value
            elif name == b"traceparent":
                traceparent = value
            elif name == b"connection":
                connection = value
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name.startswith(b"x-krika-"):
            continue
        if name == b"authorization":
            authorization = value
        elif name == b"content-length":
            content_length = value
        forward.append((name, value))
    if connection is not None:
        listed = {t.strip().lower() for t in connection.split(b",")} - {b"close", b"keep-alive"}
        if listed:
            forward = [(n, v) for n, v in forward if n not in listed]
    if chunked and content_length is not None:
        # Both framings (a smuggling attempt): the server decoded the chunked body, so its
        # Content-Length must not reach the upstream.
        content_length = None
        forward = [(n, v) for n, v in forward if n != b"content-length"]

    method: str = scope["method"]
    user_id: str | None = None
    issued_at: int | None = None
    if not gw.public.allows(method, segments):
        try:
            principal = await gw.authenticate(authorization)
        except ServiceError as exc:
            await send_error(send, exc.status, exc.code, exc.detail, _error_headers(exc))
            return
        user_id = str(principal.id)
        issued_at = token_issued_at(principal)
        user_id_var.set(user_id)
        forward.append((b"x-user-id", user_id.encode()))
        forward.append((b"x-user-roles", ",".join(sorted(principal.roles)).encode()))

    client_ip, forwarded = gw.forwarded(scope, xff, xfp, host, xfh)
    verdict = await gw.limiter.check(
        group.name, gw.rate_limit(group.name), client_ip, user_id, issued_at
    )
    if verdict.suspended:
        await send_error(send, 403, "account_suspended", "This account is suspended")
        return
    if verdict.retry_after:
        await send_error(
            send,
            429,
            "rate_limited",
            "Too many requests",
            [(b"retry-after", str(verdict.retry_after).encode())],
        )
        return

    forward.extend(forwarded)
    forward.append((b"x-request-id", scope["state"]["request_id"].encode()))
    forward.append((b"traceparent", outgoing_traceparent(traceparent)))

    target = raw_path[len(b"/api/v1") :]
    query: bytes = scope.get("query_string", b"")
    if query:
        target += b"?" + query

    content: Body = None
    if chunked or (content_length is not None and content_length != b"0"):
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        first: bytes = message.get("body", b"")
        content = _stream_body(first, receive) if message.get("more_body") else first

    service = group.service
    try:
        response = await gw.upstream.send(method, gw.origin(service), target, forward, content)
    except ClientGone:
        return
    except UpstreamError as exc:
        if _client_left(exc):  # the client hung up mid-upload; nobody to answer
            return
        await _upstream_failed(send, service, exc)
        return
    try:
        await _relay_response(response, send, service)
    finally:
        await response.aclose()


def _client_left(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # the HTTP client wraps what our body iterator raised
        if seen is None:
            return False
        if isinstance(seen, ClientGone) or any(isinstance(a, ClientGone) for a in seen.args):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _upstream_failed(send: Send, service: str, exc: UpstreamError) -> None:
    if isinstance(exc, UpstreamTimeout):
        log.warning("upstream %s timed out: %s", service, exc)
        detail = f"The {service} service did not answer in time"
        await send_error(send, 504, "upstream_timeout", detail)
    else:
        log.warning("upstream %s unavailable: %s", service, exc)
        detail = f"The {service} service is unavailable"
        await send_error(send, 502, "upstream_unavailable", detail)


async def _stream_body(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body: bytes = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body"):
            return


async def _relay_response(response: UpstreamResponse, send: Send, service: str) -> None:
    headers: list[tuple[bytes, bytes]] = []
    length = -1
    for name, value in response.headers:
        name = name.lower()
        if name in _RESPONSE_DROP:
            continue
        if name == b"content-length":
            length = int(value)
        headers.append((name, value))
    start = {"type": "http.response.start", "status": response.status, "headers": headers}
    if 0 <= length <= _SMALL_BODY:
        # Small and of known size: one body message instead of a streamed series.
        try:
            body = await response.read()
        except UpstreamError as exc:
            await _upstream_failed(send, service, exc)
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    await send(start)
    try:
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are out: all we can do is cut the response short, which the client sees.
        log.warning("upstream %s broke off its response: %s", service, exc)
        return
    await send({"type": "http.response.body", "body": b""})
