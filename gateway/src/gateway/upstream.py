"""The HTTP client the proxy forwards with: aiohttp by default, httpx selectable.

httpx is the stack's HTTP client and the gateway still uses it for the JWKS and the API docs.
On the proxy hot path it could not come near the performance target (bench/README.md has the
figures): its connection pool polls every pooled socket on each request and its HTTP/1.1
parser is pure Python, while aiohttp keeps idle connections in a per-host queue and parses
with llhttp in C. `GATEWAY_UPSTREAM_CLIENT=httpx` switches back, e.g. to compare.

Both stream request and response bodies, never follow redirects, keep no cookies, add no
headers of their own (no User-Agent, Accept or Accept-Encoding; no transparent
decompression), and map failures onto `UpstreamTimeout` (504) and `UpstreamUnavailable` (502).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from gateway.config import Settings

Headers = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterator[bytes] | None


class UpstreamError(Exception):
    pass


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or send in time."""


class UpstreamUnavailable(UpstreamError):
    """Nothing listens there, or the connection broke."""


class UpstreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    async def send(
        self, method: str, origin: str, target: bytes, headers: Headers, body: Body
    ) -> UpstreamResponse:
        """`origin` like http://host:port; `target` the raw path and query."""
        ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------------------- aiohttp


class _AiohttpResponse:
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


class AiohttpUpstream:
    def __init__(self, settings: Settings) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.upstream_max_connections,
                limit_per_host=0,
                keepalive_timeout=settings.upstream_keepalive_expiry,
            ),
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
        self._origins: dict[str, URL] = {}

    async def send(
        self, method: str, origin: str, target: bytes, headers: Headers, body: Body
    ) -> UpstreamResponse:
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
        try:
            response = await self._session.request(
                method,
                url,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body,
                allow_redirects=False,
                compress=None,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        await self._session.close()


# ---------------------------------------------------------------------------- httpx


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        return self._response.headers.raw

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


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


class HttpxUpstream:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._origins: dict[str, httpx.URL] = {}

    async def send(
        self, method: str, origin: str, target: bytes, headers: Headers, body: Body
    ) -> UpstreamResponse:
        base = self._origins.get(origin)
        if base is None:
            base = self._origins[origin] = httpx.URL(origin)
        # httpx.Request, not client.build_request: no default headers or cookies merged in.
        request = httpx.Request(
            method, base.copy_with(raw_path=target), headers=headers, content=body
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        """The httpx client is shared with the JWKS and docs; its owner closes it."""
