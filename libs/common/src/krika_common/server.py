"""How every Krika process serves HTTP: uvicorn, with every limit explicit (`HttpLimits`).

uvicorn parses with httptools but bounds neither the size nor the number of request headers,
waits forever for headers and for a body that trickles in, and takes any body size. Here:

- `GuardedHttpProtocol` (uvicorn's httptools protocol, extended) refuses a request head over
  `max_header_bytes` or with more than `max_headers` headers (431), closes a connection whose
  headers are not complete `header_timeout` seconds after it opened (or after the request's
  first byte) and one whose body brings less than `body_min_rate` bytes/s over a
  `body_window` (408), answers 503 `overloaded` beyond `max_concurrency` requests in progress
  and closes connections beyond `max_connections`. Its refusals are JSON in our error shape.
- `BodyLimitMiddleware` answers 413 `payload_too_large` to a body over its route's limit, from
  `Content-Length` before reading anything, or as soon as a chunked body passes it.

`serve()` runs an app with both; tests get the same through `krika_common.testing.serving`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import httptools
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from krika_common.config import HttpLimits, KrikaSettings

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
# A single read from the socket can hold this much beyond a request's head (asyncio reads up to
# 256 KiB at once): the raw-byte guard below allows for it so that it never refuses a valid head.
_READ_SLACK = 256 * 1024
# After answering before the request was fully read, the connection's write side is shut and
# what the client still sends is read and dropped for up to this long (or this much), then it
# is closed: closing at once with unread input would reset the connection and the client would
# likely never see the answer (nginx's "lingering close").
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


def error_bytes(code: str, detail: Any) -> bytes:
    return json.dumps({"error": code, "detail": detail}).encode()


def raw_response(status: int, code: str, detail: str, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response in our error shape that closes the connection."""
    body = error_bytes(code, detail)
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


async def send_error(
    send: Send,
    status: int,
    code: str,
    detail: Any,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """An ASGI response in our error shape, for code below FastAPI's exception handlers."""
    body = error_bytes(code, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    detail = "The service is busy; retry shortly"
    await send_error(send, 503, "overloaded", detail, [(b"retry-after", b"1")])


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the response is in `self._refusal`."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head, time and concurrency limits of `limits`.

    Use `protocol_for(limits)`: uvicorn instantiates the class itself, so the limits are a
    class attribute of a subclass made per server.
    """

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a request's end (or the connection's start) and headers
        self._head_bytes = 0  # request line and headers of the current request, as parsed
        self._head_count = 0
        self._raw_head_bytes = 0  # bytes received while in a head (bounds the parser's buffer)
        self._deadline: asyncio.TimerHandle | None = None
        self._body_window_bytes = 0
        self._refusal: bytes | None = None
        self._lingering = -1  # bytes dropped since lingering began; -1 while not lingering

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)
            transport.abort()
            return
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering >= 0:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._raw_head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is None:
                self.logger.debug("invalid HTTP request received")
                self._refusal = raw_response(400, "bad_request", "Invalid HTTP request")
            self._refuse()
            return
        if self._in_head and self._raw_head_bytes > self.limits.max_header_bytes + _READ_SLACK:
            self._refusal = raw_response(431, "headers_too_large", self._head_limit_text())
            self._refuse()
        elif self._deadline is None and not self._in_head and self._receiving_body():
            self._body_window_bytes = 0
            self._arm(self.limits.body_window, self._body_window_ended)

    def send_400_response(self, msg: str) -> None:
        self._refusal = raw_response(400, "bad_request", msg)
        self._refuse()

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_count = 0
        if self._deadline is None:
            self._arm(self.limits.header_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        if (
            self._head_bytes > self.limits.max_header_bytes
            or self._head_count > self.limits.max_headers
        ):
            self._refuse_head()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._raw_head_bytes = 0
        self._disarm()
        if len(self.tasks) >= self.limits.max_concurrency:
            # uvicorn starts `self.app` for the request: for this one, the 503 answer instead.
            app, self.app = self.app, _overloaded
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_window_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            # Answered before the body was read (413, 401...): no reading on, no keep-alive.
            self.server_state.total_requests += 1
            self._linger()
            return
        super().on_response_complete()

    # --- limits ---------------------------------------------------------------------------------

    def _head_limit_text(self) -> str:
        return (
            f"The request head must fit in {self.limits.max_header_bytes} bytes "
            f"and {self.limits.max_headers} headers"
        )

    def _refuse_head(self) -> None:
        self._refusal = raw_response(431, "headers_too_large", self._head_limit_text())
        raise _Refused()

    def _receiving_body(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.response_complete

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and self._raw_head_bytes:
            self._refusal = raw_response(408, "request_timeout", "The request head took too long")
        self._refuse()

    def _body_window_ended(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._receiving_body():
            return
        enough = self.limits.body_min_rate * self.limits.body_window
        if self._body_window_bytes >= enough or self.flow.read_paused:
            # The client keeps up, or the application is not reading (not the client's fault).
            self._body_window_bytes = 0
            self._arm(self.limits.body_window, self._body_window_ended)
            return
        self._refusal = raw_response(408, "request_timeout", "The request body arrived too slowly")
        self._refuse()

    def _refuse(self) -> None:
        """Answer `self._refusal` (when the current response has not started) and close."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self._refusal = None  # half a response is out: all we can do is cut it short
            cycle.disconnected = True  # the application's receive() answers http.disconnect
            cycle.message_event.set()
        refusal, self._refusal = self._refusal, None
        if refusal is None or self.transport.is_closing():
            self.transport.close()
            return
        self.transport.write(refusal)
        self._linger()

    def _linger(self) -> None:
        self._disarm()
        self._lingering = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()  # after what is buffered: the client reads it, then EOF
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def protocol_for(limits: HttpLimits) -> type[GuardedHttpProtocol]:
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def uvicorn_options(limits: HttpLimits) -> dict[str, Any]:
    """The uvicorn.Config keyword arguments that apply `limits`."""
    return {
        "http": protocol_for(limits),
        "timeout_keep_alive": limits.keepalive_timeout,
        "ws_max_size": limits.ws_max_message,
        # The gateway and services judge forwarded headers themselves (krika_common.edge).
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
    }


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for tests and the development launcher)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError:
        return False
    return True


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn (`Server.serve(sockets=...)`).

    Made with the explicit IPPROTO_TCP protocol: asyncio sets TCP_NODELAY only on connections
    of such sockets, and without it every keep-alive response waits out a delayed ACK (40 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    app: ASGIApp,
    settings: KrikaSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    more_ports: tuple[int, ...] = (),
) -> None:
    """Run `app` (one process, one event loop, uvloop) with the settings' HTTP limits, on
    `port` and any `more_ports` (the app tells them apart by `scope["server"]`)."""
    host = host or settings.host
    ports = (port or settings.port, *more_ports)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings.http)))
    server.run(sockets=[listen(host, p) for p in ports])


# --------------------------------------------------------------------------- body limits


class BodyTooLarge(Exception):
    """A chunked request body passed its limit while the application was reading it."""


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's Content-Length (None if absent or unreadable) and whether it is chunked."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    return (None, True) if chunked else (length, False)


class BodyLimitMiddleware:
    """413 `payload_too_large` for a request body over `limit_for(scope)` bytes.

    With a Content-Length the answer comes before any byte is read; a chunked body is counted
    as the application reads it, and when it passes the limit the application's read fails
    and whatever it then answers is replaced by the 413 (unless its response had started).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = _framing(scope)
        if length is None and not chunked:  # no body at all
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        if length is not None:
            if length > limit:
                await _send_too_large(send, limit)
                return
            await self.app(scope, receive, send)  # the server delivers exactly `length` bytes
            return

        received = 0
        overflowed = started = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                return  # the 413 below replaces what the application answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if overflowed and not started:
            await _send_too_large(send, limit)


async def _send_too_large(send: Send, limit: int) -> None:
    # No `connection: close`: the protocol lingers when a body is left unread (see _linger).
    detail = f"The request body must not exceed {limit} bytes"
    await send_error(send, 413, "payload_too_large", detail)
