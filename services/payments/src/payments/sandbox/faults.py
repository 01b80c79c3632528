"""Forced faults (rules of kind `fault`), applied around the app as ASGI middleware.

A matching call answers 500 (`server_error`) or is held `timeout_seconds` (`timeout`) and,
if the client is still there, answered then. With `effect` the call is carried out and
committed first and only its answer is replaced or held back: the "did it happen?" case a
client must verify rather than retry blindly. Without it, nothing happens (a timeout then
answers 504).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .rules import FaultRule, take_rule

SERVER_ERROR = {"status": False, "message": "An error occurred"}
GATEWAY_TIMEOUT = {"status": False, "message": "Gateway Timeout"}


class StripTrailingSlash:
    """`/transaction/42/` is `/transaction/42`, as on Paystack (some clients add the slash)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = path.rstrip("/") or "/"
            scope = {**scope, "path": stripped, "raw_path": stripped.encode()}
        await self.app(scope, receive, send)


def _has_secret_key(scope: Scope, secret_key: str) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), secret_key.encode()
            )
    return False


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _client_left_within(receive: Receive, seconds: float) -> bool:
    """Hold for `seconds`; True as soon as the client disconnects."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait_for(asyncio.shield(watcher), seconds)
    except TimeoutError:
        return False
    finally:
        watcher.cancel()
    return True


class FaultInjection:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        state = scope["app"].state
        if (
            path.startswith("/_sandbox")
            or path == "/healthz"
            or not hasattr(state, "store")
            # An API call that Paystack would refuse (no or a wrong key) triggers nothing.
            or (
                not path.startswith("/checkout/")
                and not _has_secret_key(scope, state.settings.secret_key)
            )
        ):
            await self.app(scope, receive, send)
            return
        async with state.store.tx() as conn:
            rule = await take_rule(
                conn, FaultRule, "fault", lambda r: r.matches(scope["method"], path)
            )
        if rule is None:
            await self.app(scope, receive, send)
            return

        answer: list[Message] = []
        if rule.effect:

            async def keep(message: Message) -> None:
                answer.append(message)

            await self.app(scope, receive, keep)
        if rule.fault == "server_error":
            await _send_json(send, 500, SERVER_ERROR)
            return
        if await _client_left_within(receive, state.settings.timeout_seconds):
            return
        if rule.effect:
            for message in answer:
                await send(message)
        else:
            await _send_json(send, 504, GATEWAY_TIMEOUT)
