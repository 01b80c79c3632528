"""`/ws`: the one WebSocket, proxied to chat's `/ws` after the same checks as HTTP.

The access token comes in the `Authorization` header or, for browsers (which cannot set
headers on a WebSocket), the `access_token` query parameter. The connection is accepted and
then closed with 1008 (policy violation) and the error code as the reason when the token is
refused or the account is suspended, and with 1013 (try again later) when rate limited or when
chat does not answer; otherwise frames are relayed both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from gateway.proxy import Gateway, mint_traceparent, token_issued_at
from krika_common.errors import ServiceError
from krika_common.telemetry import trace_id_from_traceparent

log = logging.getLogger("gateway.websocket")

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# Close codes a peer may not send on the wire (RFC 6455 §7.4.1).
_RESERVED_CODES = {1005, 1006, 1015}
_MAX_FRAME = 1024 * 1024


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})


def _token(headers: dict[bytes, bytes], query: bytes) -> bytes | None:
    if authorization := headers.get(b"authorization"):
        return authorization
    for name, value in parse_qsl(query.decode("latin-1")):
        if name == "access_token" and value:
            return f"Bearer {value}".encode()
    return None


async def handle_websocket(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = dict(scope["headers"])
    query: bytes = scope.get("query_string", b"")
    authorization = _token(headers, query)
    try:
        principal = await gw.authenticate(authorization)
    except ServiceError as exc:
        await _close(send, POLICY_VIOLATION, exc.code)
        return
    user_id = str(principal.id)
    client_ip, forwarded = gw.forwarded(
        scope,
        headers.get(b"x-forwarded-for"),
        headers.get(b"x-forwarded-proto"),
        headers.get(b"host"),
        headers.get(b"x-forwarded-host"),
    )
    verdict = await gw.limiter.check(
        "ws", gw.rate_limit("ws"), client_ip, user_id, token_issued_at(principal)
    )
    if verdict.suspended:
        await _close(send, POLICY_VIOLATION, "account_suspended")
        return
    if verdict.retry_after:
        await _close(send, TRY_AGAIN_LATER, "rate_limited")
        return

    incoming_tp = headers.get(b"traceparent", b"").decode("latin-1")
    traceparent = incoming_tp if trace_id_from_traceparent(incoming_tp) else mint_traceparent()
    upstream_headers: list[tuple[str, str]] = [
        ("Authorization", authorization.decode("latin-1") if authorization else ""),
        ("X-User-Id", user_id),
        ("X-User-Roles", ",".join(sorted(principal.roles))),
        ("X-Request-ID", uuid.uuid4().hex),
        ("traceparent", traceparent),
        *((k.decode().title(), v.decode("latin-1")) for k, v in forwarded),
    ]
    protocols = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").decode().split(",")]
    base = gw.base_url("chat")
    url = str(base.copy_with(scheme="wss" if base.scheme == "https" else "ws", raw_path=b"/ws"))
    if query:
        url += "?" + query.decode("latin-1")
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
        await _close(send, TRY_AGAIN_LATER, "upstream_unavailable")
        return
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _relay(upstream, receive, send)
    finally:
        await upstream.close()


async def _relay(upstream: ClientConnection, receive: Receive, send: Send) -> None:
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
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if (exc := task.exception()) is not None and not isinstance(
                exc, ConnectionClosed | OSError
            ):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
