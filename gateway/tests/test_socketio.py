"""A real Socket.IO client (python-socketio, WebSocket transport only) through the gateway to a
real Socket.IO server standing in for chat (tests/upstreams.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import socketio

from .conftest import GatewayClient, StartGateway
from .upstreams import Upstreams

TIMEOUT = 5.0


@pytest.fixture
def start_realtime(start_gateway: StartGateway, upstream_urls: dict[str, str]) -> StartGateway:
    """A gateway whose chat is the Socket.IO server."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[GatewayClient]:
        return start_gateway(chat_url=upstream_urls["socketio"], **overrides)

    return start


@contextlib.asynccontextmanager
async def socketio_client() -> AsyncIterator[tuple[socketio.AsyncClient, asyncio.Queue[Any]]]:
    """A client that does not reconnect, and the `message` events it receives."""
    sio = socketio.AsyncClient(reconnection=False)
    messages: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(data: Any) -> None:
        await messages.put(data)

    sio.on("message", on_message)

    try:
        yield sio, messages
    finally:
        await sio.disconnect()


async def connect(sio: socketio.AsyncClient, url: str, **kw: Any) -> None:
    await sio.connect(
        url, transports=["websocket"], socketio_path="socket.io", wait_timeout=TIMEOUT, **kw
    )


def http_url(client: httpx.AsyncClient) -> str:
    return f"http://{client.base_url.netloc.decode()}"


async def test_events_round_trip_with_the_token_in_the_query(
    start_realtime: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    token = mint_token(sub=user, roles=["customer"])
    async with start_realtime() as client, socketio_client() as (sio, messages):
        await connect(sio, f"{http_url(client)}/?access_token={token}")
        assert sio.connected

        seen = await sio.call("whoami", {}, timeout=TIMEOUT)
        assert seen["user_id"] == str(user)
        assert seen["roles"] == "customer"
        assert seen["authorization"] == f"Bearer {token}"
        assert seen["edge"] == "gateway-test-edge"
        # Engine.IO's parameters reach chat unchanged; the token is not in chat's URL.
        query = dict(pair.split("=", 1) for pair in seen["query"].split("&"))
        assert query.pop("EIO") == "4"
        assert query.pop("transport") == "websocket"
        assert "access_token" not in query

        # Client emits, the server acknowledges and emits an event of its own.
        sent = {"conversation_id": "c1", "body": "héllo", "client_id": "k1"}
        assert await sio.call("echo", sent, timeout=TIMEOUT) == sent
        assert await asyncio.wait_for(messages.get(), TIMEOUT) == {"echo": sent}
    assert [hit["user_id"] for hit in upstreams.hits] == [str(user)]


async def test_the_token_in_the_authorization_header(
    start_realtime: StartGateway, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    token = mint_token(sub=user)
    async with start_realtime() as client, socketio_client() as (sio, messages):
        await connect(sio, http_url(client), headers={"Authorization": f"Bearer {token}"})
        seen = await sio.call("whoami", {}, timeout=TIMEOUT)
        assert seen["user_id"] == str(user)
        assert seen["authorization"] == f"Bearer {token}"
        await sio.emit("echo", [1, 2])
        assert await asyncio.wait_for(messages.get(), TIMEOUT) == {"echo": [1, 2]}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "unauthorized"),
        ("/?access_token=nope", "invalid_token"),
        ("/?access_token=expired", "token_expired"),
    ],
)
async def test_without_a_valid_token_the_connection_is_refused_with_its_reason(
    start_realtime: StartGateway,
    upstreams: Upstreams,
    mint_token: Callable[..., str],
    query: str,
    code: str,
) -> None:
    query = query.replace("expired", mint_token(ttl=-120))
    async with start_realtime() as client, socketio_client() as (sio, _):
        errors: list[Any] = []

        async def connect_error(data: Any) -> None:
            errors.append(data)

        sio.on("connect_error", connect_error)
        # The gateway answers the client's CONNECT with a CONNECT_ERROR, as chat would: the
        # client's connect_error handler gets the code and the detail.
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(sio, f"{http_url(client)}{query}")
        assert not sio.connected
        assert len(errors) == 1
        assert errors[0]["message"] == code
        assert errors[0]["data"]["error"] == code
    assert upstreams.hits == []  # chat never saw it


async def test_long_polling_is_refused(
    start_realtime: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    token = mint_token()
    async with start_realtime() as client, socketio_client() as (sio, _):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                f"{http_url(client)}/?access_token={token}",
                transports=["polling"],
                socketio_path="socket.io",
                wait_timeout=TIMEOUT,
            )
        assert not sio.connected
        response = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert response.status_code == 400
        assert response.json()["error"] == "websocket_transport_only"
    assert upstreams.hits == []
