"""/ws is proxied to chat's /ws after the token check."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.config import RateLimit

from .conftest import StartGateway


def ws_url(client: httpx.AsyncClient, query: str = "") -> str:
    return f"ws://{client.base_url.netloc.decode()}/ws{query}"


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
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason)


async def test_websocket_expired_token(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    token = mint_token(ttl=-120)
    async with connect(
        ws_url(client), additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token_expired")


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
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "upstream_unavailable")


async def test_websocket_connections_are_rate_limited(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    token = mint_token()
    limits = {"ws": RateLimit(per_user=1, per_ip=100, window=60)}
    async with start_gateway(rate_limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
            json.loads(await ws.recv())
        async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "rate_limited")
