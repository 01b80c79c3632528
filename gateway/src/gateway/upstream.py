"""The HTTP client the proxy forwards with (aiohttp), and the one for everything else (httpx).

httpx is the stack's HTTP client and the gateway uses it for the JWKS and the API docs. On
the proxy hot path it could not come near the performance target (bench/README.md has the
figures): its connection pool polls every pooled socket on each request and its HTTP/1.1
parser is pure Python, while aiohttp keeps idle connections in a per-host queue and parses
with llhttp in C.

Forwarding streams request and response bodies, never follows redirects, keeps no cookies,
adds no headers of its own (no User-Agent, Accept or Accept-Encoding; no transparent
decompression), and maps failures onto `UpstreamTimeout` (504) and `UpstreamUnavailable` (502).

A pooled connection is reused only within `upstream_keepalive_expiry` (below the services'
keep-alive), but an upstream may still close one just as it is reused (a restart, a race with
its timer). When a request sent on a reused connection finds it closed before any answer, and
its body can be sent again, it is retried once on a new connection: the upstream never saw it.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import aiohttp
import httpx
from prometheus_client import Counter
from yarl import URL

from gateway.config import Settings

log = logging.getLogger("gateway.upstream")

RETRIED = Counter(
    "gateway_upstream_retries_total",
    "Requests resent on a new connection after a reused one turned out closed",
)

Headers = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterator[bytes] | None


class UpstreamError(Exception):
    pass


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or send in time."""


class UpstreamUnavailable(UpstreamError):
    """Nothing listens there, or the connection broke."""


# ---------------------------------------------------------------------------- aiohttp


class UpstreamResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        return self._response.raw_headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        # Fully read: the connection goes back to the pool; otherwise it is closed.
        self._response.release()


class _Attempt:
    """Per request: whether the connector handed out a connection it had used before."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "gateway_upstream_attempt", default=None
)


class _NotingConnector(aiohttp.TCPConnector):
    """Notes, for the request being sent, whether its connection was reused from the pool.

    (aiohttp's TraceConfig would tell too, but tracing costs about a quarter of the proxy's
    throughput: every request then sends all of aiohttp's trace signals.)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol is not None:
            attempt = _attempt.get()
            if attempt is not None:
                attempt.reused = protocol in self._used
            self._used.add(protocol)
        return connection


def _aiohttp_session(settings: Settings, *, pooled: bool) -> aiohttp.ClientSession:
    options: dict[str, Any] = {
        "limit": settings.upstream_max_connections,
        "limit_per_host": 0,
        "keepalive_timeout": settings.upstream_keepalive_expiry if pooled else None,
        "force_close": not pooled,
    }
    return aiohttp.ClientSession(
        connector=_NotingConnector(**options) if pooled else aiohttp.TCPConnector(**options),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_timeout,
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        trust_env=False,
    )


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self._session = _aiohttp_session(settings, pooled=True)
        # For the one retry after a pooled connection turned out closed: always a new one.
        self._fresh = _aiohttp_session(settings, pooled=False)
        self._origins: dict[str, URL] = {}

    async def send(
        self, method: str, origin: str, target: bytes, headers: Headers, body: Body
    ) -> UpstreamResponse:
        """`origin` like http://host:port; `target` the raw path and query."""
        base = self._origins.get(origin)
        if base is None:
            base = self._origins[origin] = URL(origin)
        path, _, query = target.decode("latin-1").partition("?")
        url = URL.build(
            scheme=base.scheme,
            host=base.raw_host or "",
            port=base.port,
            path=path,
            query_string=query,
            encoded=True,
        )
        options: dict[str, Any] = {
            "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            "data": body,
            "allow_redirects": False,
            "compress": None,
        }
        attempt = _Attempt()
        token = _attempt.set(attempt)
        try:
            try:
                response = await self._session.request(method, url, **options)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if not attempt.reused or not (body is None or isinstance(body, bytes)):
                    raise
                RETRIED.inc()
                log.debug("pooled connection to %s was closed; resending", origin)
                response = await self._fresh.request(method, url, **options)
        except TimeoutError as exc:
            raise UpstreamTimeout(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        finally:
            _attempt.reset(token)
        return UpstreamResponse(response)

    async def aclose(self) -> None:
        await self._session.close()
        await self._fresh.close()


# ---------------------------------------------------------------------------- httpx


def httpx_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.upstream_timeout, connect=settings.upstream_connect_timeout),
        limits=httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_keepalive,
            keepalive_expiry=settings.upstream_keepalive_expiry,
        ),
        # A proxy must never keep one user's cookies for the next: a jar that takes none.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        follow_redirects=False,
        trust_env=False,
    )
