"""`/socket.io/`: the realtime connection, proxied to chat's `/socket.io/` after the same
admission as HTTP.

Chat serves Socket.IO (Engine.IO v4) with the WebSocket transport only, so any replica can hold
a connection and none needs sticky sessions: a WebSocket at `/socket.io/` (or `/socket.io`) is
relayed frame by frame, and an HTTP request there - Engine.IO's long-polling transport - is
answered 400 `websocket_transport_only` (`refuse_polling`). A WebSocket at any other path gets
404 `not_found` instead of a handshake (`refuse_handshake`).

The access token comes in the `Authorization` header or, for browsers (which cannot set
headers on a WebSocket), the `access_token` query parameter. Two Authorization headers, two
`access_token` parameters, or a header and a different query token are refused: chat receives
the verified token only, in `Authorization`. The rest of the query (Engine.IO's
`EIO=4&transport=websocket`, anything the client adds) reaches chat as sent; only
`access_token` is taken out.

When admission refuses the connection it is refused in Socket.IO's own terms, so a client's
`connect_error` handler sees why: the gateway accepts, sends Engine.IO's open packet, answers
the client's CONNECT (or, after REFUSAL_WAIT seconds without one, the default namespace) with a
CONNECT_ERROR `{message: <code>, data: {error, detail}}`, and closes with 1008 (policy
violation) and the code as the reason - or 1013 (try again later) when rate limited (group
`realtime`) or when chat does not answer. Otherwise frames are relayed both ways until either
side closes.

A socket does not outlive its token: every live socket is registered (`LiveSockets`) and closed
with 1008 `token_expired` when the token's `exp` passes, and with 1008 `account_suspended` or
`token_revoked` as soon as the user's access mark says so - `watch_access_marks` follows the
marks' Redis channel, where every change is announced (krika_common.access), on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import KeysView
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from gateway.core import Gateway, RateLimited, outgoing_traceparent
from gateway.routes import REALTIME_GROUP, REALTIME_UPSTREAM_PATH
from krika_common.access import follow_marks, refusal
from krika_common.auth import AmbiguousCredentials, Principal
from krika_common.errors import ServiceError
from krika_common.server import error_bytes, send_error

log = logging.getLogger("gateway.websocket")

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# Close codes a peer may not send on the wire (RFC 6455 §7.4.1).
_RESERVED_CODES = {1005, 1006, 1015}
_MAX_FRAME = 1024 * 1024
# The query goes on as the client sent it: only bytes a URL may not carry raw (non-ASCII,
# controls, space and " # < > \ ^ ` { | }) are percent-encoded; `%` is kept, so escapes stay.
_QUERY_SAFE = "!$%&'()*+,-./:;=?@_~[]"
POLLING_REFUSED = (
    "Engine.IO long-polling is not served: connect with the WebSocket transport only "
    '(Socket.IO clients: transports=["websocket"])'
)


class LiveSocket:
    """One proxied WebSocket: who holds it, and how to ask its relay to close it."""

    __slots__ = ("closing", "principal")

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def close(self, code: int, reason: str) -> None:
        if not self.closing.done():
            self.closing.set_result((code, reason))


class LiveSockets:
    """The open sockets of this replica, by user."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[LiveSocket]] = {}

    def add(self, socket: LiveSocket) -> None:
        self._by_user.setdefault(str(socket.principal.id), set()).add(socket)

    def remove(self, socket: LiveSocket) -> None:
        user = str(socket.principal.id)
        sockets = self._by_user.get(user)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._by_user[user]

    def users(self) -> KeysView[str]:
        return self._by_user.keys()

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    def apply_mark(self, user_id: str, version: int | None, suspended: bool) -> int:
        """Close the user's sockets whose token the mark no longer honours; how many."""
        closed = 0
        for socket in list(self._by_user.get(user_id, ())):
            error = refusal(version, suspended, socket.principal.token_version)
            if error is not None:
                socket.close(POLICY_VIOLATION, error.code)
                closed += 1
        return closed


async def watch_access_marks(redis_url: str, sockets: LiveSockets, retry: float = 1.0) -> None:
    """Close sockets as access marks change, until cancelled (krika_common.access.follow_marks:
    a pub/sub connection of its own, and every live user's mark read again after each
    (re)subscription)."""

    async def changed(user_id: str, version: int | None, suspended: bool) -> None:
        if sockets.apply_mark(user_id, version, suspended):
            log.info("closed the live sockets of user %s: access changed", user_id)

    await follow_marks(redis_url, sockets.users, changed, retry=retry)


async def refuse_polling(scope: Scope, send: Send) -> None:
    """An HTTP request at the realtime path: Engine.IO polling, which we do not serve."""
    scope["krika.route"] = REALTIME_UPSTREAM_PATH.decode()
    await send_error(send, 400, "websocket_transport_only", POLLING_REFUSED)


async def refuse_handshake(receive: Receive, send: Send) -> None:
    """A WebSocket anywhere but the realtime path: the handshake is answered with the 404
    `not_found` an HTTP request there would get (not accepted)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    body = error_bytes("not_found", "Not found")
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


# How long a refused connection waits for the client's Socket.IO CONNECT (to answer it).
REFUSAL_WAIT = 2.0
_OPEN = json.dumps(
    {"sid": "", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 0}
)


async def _refuse(
    send: Send, receive: Receive, code: int, reason: str, detail: str | None = None
) -> None:
    """Refuse a connection so that a Socket.IO client learns why (see the module docstring);
    a plain WebSocket client gets two text frames and the close."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "0" + _OPEN})
    namespace = ""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(REFUSAL_WAIT):
            message = await receive()
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if isinstance(text, str) and text.startswith("40/"):  # "40/chat,{...}"
                namespace = text[2:].split(",", 1)[0][:100] + ","
    error = {"message": reason, "data": {"error": reason, "detail": detail or reason}}
    with contextlib.suppress(Exception):  # the client may have gone already
        await send({"type": "websocket.send", "text": f"44{namespace}{json.dumps(error)}"})
        await send({"type": "websocket.close", "code": code, "reason": reason})


def _credentials(scope: Scope) -> tuple[list[bytes], str]:
    """The Authorization values to check and the query to forward: the client's as sent,
    without its `access_token` parameters."""
    headers = [v for n, v in scope["headers"] if n == b"authorization"]
    query: bytes = scope.get("query_string", b"")
    tokens: list[bytes] = []
    kept: list[bytes] = []
    for part in query.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == b"access_token":
            tokens.append(unquote_to_bytes(value.replace(b"+", b" ")))
        else:
            kept.append(part)
    rest = quote_from_bytes(b"&".join(kept), safe=_QUERY_SAFE)
    if len(tokens) > 1:
        raise AmbiguousCredentials()
    if tokens:
        from_query = b"Bearer " + tokens[0]
        if headers and headers != [from_query]:
            raise AmbiguousCredentials()
        headers = headers or [from_query]
    return headers, rest


async def handle_websocket(
    gw: Gateway, sockets: LiveSockets, scope: Scope, receive: Receive, send: Send
) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = dict(scope["headers"])
    try:
        authorizations, query = _credentials(scope)
        admission = await gw.admit(
            scope,
            REALTIME_GROUP,
            authorizations,
            public=False,
            xff=headers.get(b"x-forwarded-for"),
            proto=headers.get(b"x-forwarded-proto"),
            host=headers.get(b"host"),
            fwd_host=headers.get(b"x-forwarded-host"),
        )
    except RateLimited:
        await _refuse(send, receive, TRY_AGAIN_LATER, RateLimited.code)
        return
    except ServiceError as exc:
        await _refuse(send, receive, POLICY_VIOLATION, exc.code, str(exc.detail))
        return
    principal = admission.principal
    assert principal is not None

    trusted = scope.get("state", {}).get("trusted_hop", False)
    traceparent = outgoing_traceparent(headers.get(b"traceparent") if trusted else None)
    upstream_headers: list[tuple[str, str]] = [
        ("Authorization", authorizations[0].decode("latin-1")),
        ("X-User-Id", str(principal.id)),
        ("X-User-Roles", ",".join(sorted(principal.roles))),
        ("X-Request-ID", os.urandom(16).hex()),
        ("traceparent", traceparent.decode()),
        *((k.decode().title(), v.decode("latin-1")) for k, v in admission.hop_headers),
    ]
    protocols = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").decode().split(",")]
    base = gw.base_url("chat")
    url = str(
        base.copy_with(
            scheme="wss" if base.scheme == "https" else "ws", raw_path=REALTIME_UPSTREAM_PATH
        )
    )
    if query:
        url += "?" + query
    try:
        upstream = await connect(
            url,
            additional_headers=upstream_headers,
            subprotocols=[Subprotocol(p) for p in protocols if p] or None,
            open_timeout=gw.settings.upstream_connect_timeout,
            proxy=None,
            max_size=_MAX_FRAME,
            user_agent_header=None,
        )
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        log.warning("chat websocket unavailable: %s: %s", type(exc).__name__, exc)
        await _refuse(send, receive, TRY_AGAIN_LATER, "upstream_unavailable")
        return

    socket = LiveSocket(principal)
    sockets.add(socket)
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, principal.expires_at - time.time()),
        socket.close,
        POLICY_VIOLATION,
        "token_expired",
    )
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _relay(upstream, receive, send, socket.closing)
    finally:
        expiry.cancel()
        sockets.remove(socket)
        await upstream.close()


async def _relay(
    upstream: ClientConnection,
    receive: Receive,
    send: Send,
    closing: asyncio.Future[tuple[int, str]],
) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                text: str | None = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")
            elif message["type"] == "websocket.disconnect":
                code = int(message.get("code", 1000))
                await upstream.close(1000 if code in _RESERVED_CODES else code)
                return

    async def upstream_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                frame: dict[str, Any] = {"type": "websocket.send"}
                frame["text" if isinstance(data, str) else "bytes"] = data
                await send(frame)
        code = upstream.close_code or 1000
        await send(
            {
                "type": "websocket.close",
                "code": 1011 if code in _RESERVED_CODES else code,
                "reason": upstream.close_reason or "",
            }
        )

    tasks = [
        asyncio.create_task(client_to_upstream()),
        asyncio.create_task(upstream_to_client()),
    ]
    watched: list[asyncio.Future[Any]] = [*tasks, closing]
    try:
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if closing in done:
            # The gateway ends it: the token expired or the user's access changed.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            code, reason = closing.result()
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        for finished in done:
            if (exc := finished.exception()) is not None and not isinstance(
                exc, ConnectionClosed | OSError
            ):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
