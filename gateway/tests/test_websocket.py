"""The realtime WebSocket: /socket.io/ is proxied to chat's /socket.io/ after the token check;
HTTP there (Engine.IO polling) and WebSockets anywhere else are refused. (A real Socket.IO
client through the gateway: test_socketio.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.config import RateLimit, Settings

from .conftest import GatewayClient, StartGateway

ENGINE_IO = "EIO=4&transport=websocket"


async def refusal(ws: ClientConnection) -> tuple[dict[str, Any], int, str]:
    """What a refused connection says, read as a Socket.IO client would: Engine.IO's open
    packet, then (after our CONNECT) a CONNECT_ERROR; (its payload, the close code, reason)."""
    opened = await ws.recv()
    assert isinstance(opened, str)
    assert opened.startswith("0{")
    await ws.send("40")
    refused = await ws.recv()
    assert isinstance(refused, str)
    assert refused.startswith("44{")
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    payload: dict[str, Any] = json.loads(refused[2:])
    return payload, closed.value.rcvd.code, closed.value.rcvd.reason


def ws_url(client: httpx.AsyncClient, query: str = "", path: str = "/socket.io/") -> str:
    return f"ws://{client.base_url.netloc.decode()}{path}{query}"


async def test_websocket_relays_frames_with_verified_identity(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    token = mint_token(sub=user, roles=["customer"])
    async with connect(
        ws_url(client),
        additional_headers={"Authorization": f"Bearer {token}", "X-User-Id": "spoofed"},
        proxy=None,
    ) as ws:
        hello = json.loads(await ws.recv())
        assert hello["x-user-id"] == [str(user)]
        assert hello["x-user-roles"] == "customer"
        assert hello["authorization"] == f"Bearer {token}"
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
        # The upstream's close code and reason reach the client.
        await ws.send("close-please")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")


async def test_websocket_token_in_query_for_browsers(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    async with connect(ws_url(client, f"?access_token={mint_token(sub=user)}"), proxy=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello["x-user-id"] == [str(user)]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "unauthorized"), ({"Authorization": "Bearer nope"}, "invalid_token")],
)
async def test_websocket_without_valid_token_is_closed_with_policy_violation(
    client: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
        payload, code, why = await refusal(ws)
    assert (code, why) == (1008, reason)
    assert payload["message"] == payload["data"]["error"] == reason
    assert payload["data"]["detail"]


async def test_websocket_expired_token(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    token = mint_token(ttl=-120)
    async with connect(
        ws_url(client), additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
    ) as ws:
        _, code, reason = await refusal(ws)
    assert (code, reason) == (1008, "token_expired")


async def test_websocket_chat_down_closes_try_again_later(
    start_gateway: StartGateway, upstream_urls: dict[str, str], mint_token: Callable[..., str]
) -> None:
    async with (
        start_gateway(chat_url=upstream_urls["closed"]) as client,
        connect(
            ws_url(client),
            additional_headers={"Authorization": f"Bearer {mint_token()}"},
            proxy=None,
        ) as ws,
    ):
        payload, code, reason = await refusal(ws)
    assert (code, reason) == (1013, "upstream_unavailable")
    assert payload["message"] == "upstream_unavailable"


async def test_websocket_connections_are_rate_limited(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    token = mint_token()
    limits = {"realtime": RateLimit(per_user=1, per_ip=100, window=60)}
    async with start_gateway(rate_limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
            json.loads(await ws.recv())
        async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
            _, code, reason = await refusal(ws)
    assert (code, reason) == (1013, "rate_limited")


def test_the_old_ws_rate_limit_group_is_refused_not_ignored(
    settings_factory: Callable[..., Settings],
) -> None:
    """The group was renamed `realtime`: a stale "ws" setting fails at startup instead of
    quietly leaving the connection on the default limits."""
    with pytest.raises(ValidationError, match=r"unknown rate-limit groups \['ws'\]"):
        settings_factory(rate_limits={"ws": RateLimit(per_user=1)})
    settings = settings_factory(rate_limits={"realtime": RateLimit(per_user=1)})
    assert settings.rate_limit_for("realtime").per_user == 1


async def test_the_query_reaches_chat_as_sent_without_the_token(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    token = mint_token(sub=user)
    for path in ("/socket.io/", "/socket.io"):
        query = f"?{ENGINE_IO}&access_token={token}&name=a%20b+c&empty=&flag&t=Pq2~x"
        async with connect(ws_url(client, query, path), proxy=None) as ws:
            hello = json.loads(await ws.recv())
        assert hello["x-user-id"] == [str(user)], path
        assert hello["authorizations"] == [f"Bearer {token}"], path
        assert hello["query"] == f"{ENGINE_IO}&name=a%20b+c&empty=&flag&t=Pq2~x", path


async def test_a_query_token_that_is_not_ascii_is_an_invalid_token(
    client: httpx.AsyncClient,
) -> None:
    """It used to raise UnicodeEncodeError (the handshake failed with a 500)."""
    async with connect(ws_url(client, "?access_token=%E2%82%AC"), proxy=None) as ws:
        _, code, reason = await refusal(ws)
    assert (code, reason) == (1008, "invalid_token")


async def test_websockets_elsewhere_get_404_not_a_handshake(
    client: GatewayClient, mint_token: Callable[..., str]
) -> None:
    """/ws is gone; an ops-only path on the public port, or anything on the ops port, used to
    fail the handshake with a 500 (the middleware returned without answering)."""
    headers = {"Authorization": f"Bearer {mint_token()}"}
    ops = client.ops_url.replace("http://", "ws://")
    urls = [
        ws_url(client, path="/ws"),
        ws_url(client, f"?{ENGINE_IO}", path="/socket.io/x"),
        ws_url(client, path="/api/v1/chat/conversations"),
        ws_url(client, path="/metrics"),
        f"{ops}/socket.io/?{ENGINE_IO}",
        f"{ops}/healthz",
    ]
    for url in urls:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, proxy=None):
                pass
        response = refused.value.response
        assert response.status_code == 404, url
        assert json.loads(response.body or b"") == {"error": "not_found", "detail": "Not found"}


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS", "PUT", "DELETE"])
async def test_http_at_the_realtime_path_is_refused_as_polling(
    client: httpx.AsyncClient, mint_token: Callable[..., str], method: str
) -> None:
    headers = {"Authorization": f"Bearer {mint_token()}"}
    for path in ("/socket.io/?EIO=4&transport=polling", "/socket.io", "/socket.io/"):
        response = await client.request(method, path, headers=headers, content=b"40")
        assert response.status_code == 400, (method, path)
        body = response.json()
        assert body["error"] == "websocket_transport_only"
        assert "WebSocket transport" in body["detail"]
    head = await client.head("/socket.io/?EIO=4&transport=polling")
    assert head.status_code == 400


async def test_polling_refusals_are_counted_under_the_realtime_route(
    client: httpx.AsyncClient,
) -> None:
    labels = {"service": "gateway", "method": "GET", "route": "/socket.io/", "status": "400"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    assert (await client.get("/socket.io/?EIO=4&transport=polling")).status_code == 400
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
