"""Real upstreams for the gateway tests: small FastAPI apps served by uvicorn on free ports.

- a fake identity: the JWKS (counting fetches, keys changeable mid-test for rotation),
  /auth/login, /users/me;
- a fake catalog: /catalog/services/{service_id} and reads;
- an echo service standing in for orders, payments, ledger and chat: answers every request
  with what it received (method, path, headers, body size and hash), plus a slow route, a
  gated upload and download for the streaming tests, and a plain WebSocket at chat's
  /socket.io/ that reports its handshake and echoes frames;
- a real Socket.IO server (python-socketio, WebSocket transport only, as chat serves it) for
  the tests that connect a real Socket.IO client through the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import socketio
import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from joserfc.jwk import RSAKey
from pydantic import BaseModel, create_model
from starlette.types import ASGIApp

from krika_common.config import HttpLimits
from krika_common.server import free_port, listen, uvicorn_options
from krika_common.testing.jwt import TestKeys

MIB = 1024 * 1024
GATE_TIMEOUT = 15.0
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, port: int | None = None, *more_ports: int) -> AsyncIterator[str]:
    """Run `app` under uvicorn in this event loop, with Krika's HTTP limits, on `port` (and
    `more_ports`, the gateway's operations port); yields the first port's base URL."""
    port = port or free_port()
    sockets = [listen("127.0.0.1", p) for p in (port, *more_ports)]
    config = uvicorn.Config(app, log_level="warning", **uvicorn_options(HttpLimits()))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before starting")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def download_block(i: int) -> bytes:
    return i.to_bytes(4, "big") * (MIB // 4)


class Upstreams:
    """What the fake services saw, and the knobs the tests turn."""

    def __init__(self, keys: TestKeys) -> None:
        self.test_keys = keys
        self.reset()

    def reset(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.jwks_keys: list[RSAKey] = [self.test_keys.key]
        self.jwks_fetches = 0
        self.gates: dict[str, asyncio.Event] = {
            "upload_started": asyncio.Event(),
            "download_continue": asyncio.Event(),
        }


class Item(BaseModel):
    """Identity's idea of an item (collides with catalog's on purpose)."""

    name: str


# Catalog's "Item" is a different model under the same name: the merged docs must keep both.
Listing = create_model("Item", title=(str, ...), price=(int, ...))


async def _record(service: str, request: Request, state: Upstreams) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.raw:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    record = {
        "service": service,
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": request.url.query,
        "headers": headers,
        "body_len": size,
        "body_sha256": digest.hexdigest(),
    }
    state.hits.append(record)
    return record


def _add_echo(app: FastAPI, service: str, state: Upstreams) -> None:
    @app.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def echo(request: Request, path: str) -> JSONResponse:
        return JSONResponse(await _record(service, request, state))


def identity_app(state: Upstreams) -> FastAPI:
    app = FastAPI(title="fake identity")

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        state.jwks_fetches += 1
        return {"keys": [dict(k.as_dict(private=False)) for k in state.jwks_keys]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/auth/login")
    async def login(request: Request) -> dict[str, Any]:
        """Sign in."""
        return await _record("identity", request, state)

    @app.get("/users/me", response_model=Item)
    async def me(request: Request) -> dict[str, Any]:
        """Who am I."""
        record = await _record("identity", request, state)
        return {"name": record["headers"].get("x-user-id", ["?"])[0]}

    _add_echo(app, "identity", state)
    return app


def catalog_app(state: Upstreams) -> FastAPI:
    app = FastAPI(title="fake catalog")

    @app.get("/catalog/services/{service_id}", response_model=Listing)
    async def get_service(service_id: str) -> dict[str, Any]:
        """One service (gig)."""
        return {"title": service_id, "price": 1000}

    @app.post("/catalog/services", response_model=Listing)
    async def create_service(listing: Listing) -> Any:
        """Publish a service."""
        return listing

    _add_echo(app, "catalog", state)
    return app


def echo_app(state: Upstreams) -> FastAPI:
    app = FastAPI(title="echo")

    @app.get("/orders/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"status": "late"}

    @app.post("/orders/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            if chunk:
                state.gates["upload_started"].set()
            digest.update(chunk)
            size += len(chunk)
        return {"bytes": size, "sha256": digest.hexdigest()}

    @app.get("/orders/download")
    async def download(blocks: int) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield download_block(0)
            # Only a proxy that streams lets the client see block 0 before this returns.
            await asyncio.wait_for(state.gates["download_continue"].wait(), GATE_TIMEOUT)
            for i in range(1, blocks):
                yield download_block(i)

        return StreamingResponse(body(), media_type="application/octet-stream")

    @app.get("/orders/hop")
    async def hop() -> Response:
        return Response(
            b"{}",
            media_type="application/json",
            headers={
                "Keep-Alive": "timeout=99",
                "Proxy-Authenticate": "Basic",
                "Trailer": "X-Checksum",
                "X-Kept": "yes",
            },
        )

    @app.get("/orders/redirect")
    async def redirect(request: Request) -> Response:
        # A careless service redirecting with its own (internal) address.
        return Response(status_code=307, headers={"Location": f"{request.base_url}orders/x?y=1"})

    @app.get("/orders/cookie")
    async def cookie() -> Response:
        response = JSONResponse({})
        response.set_cookie("session", "secret-of-user-a")
        return response

    @app.websocket("/socket.io/")
    async def realtime(websocket: WebSocket) -> None:
        await websocket.accept()
        headers = websocket.headers
        await websocket.send_json(
            {
                "x-user-id": headers.getlist("x-user-id"),
                "x-user-roles": headers.get("x-user-roles"),
                "authorization": headers.get("authorization"),
                "authorizations": headers.getlist("authorization"),
                "x-request-id": headers.get("x-request-id"),
                "x-krika-edge": headers.get("x-krika-edge"),
                "query": websocket.url.query,
            }
        )
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close-please":
                await websocket.close(4001, "bye")
                return
            if message.get("text") is not None:
                await websocket.send_text("echo:" + message["text"])
            else:
                await websocket.send_bytes(message.get("bytes") or b"")

    _add_echo(app, "echo", state)
    return app


def socketio_app(state: Upstreams) -> ASGIApp:
    """chat's realtime hub in miniature: Socket.IO at /socket.io/, WebSocket transport only.

    Every connection is recorded in `state.hits`; one without the gateway's identity headers
    is refused. `whoami` is acknowledged with what the handshake carried; `echo` is
    acknowledged with its data and also answered with a server-emitted `message` event.
    """
    sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"])

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        handshake = {
            "service": "socketio",
            "user_id": environ.get("HTTP_X_USER_ID"),
            "roles": environ.get("HTTP_X_USER_ROLES"),
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "edge": environ.get("HTTP_X_KRIKA_EDGE"),
            "query": environ.get("QUERY_STRING"),
        }
        state.hits.append(handshake)
        if handshake["user_id"] is None:
            return False
        await sio.save_session(sid, handshake)
        return True

    async def whoami(sid: str, data: Any) -> dict[str, Any]:
        session: dict[str, Any] = await sio.get_session(sid)
        return session

    async def echo(sid: str, data: Any) -> Any:
        await sio.emit("message", {"echo": data}, to=sid)
        return data

    for handler in (connect, whoami, echo):
        sio.on(handler.__name__, handler)
    app: ASGIApp = socketio.ASGIApp(sio, socketio_path="socket.io")
    return app
