"""The gateway attacked as a hostile client would: each test is a defect found so (issue 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from krika_common.access import AccessMarks
from krika_common.testing.jwt import TestKeys

from .conftest import StartGateway
from .test_websocket import refusal
from .upstreams import Upstreams

PRIVATE = "/api/v1/orders"


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


# --- credentials -------------------------------------------------------------------------------


async def test_two_authorization_headers_are_refused(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    own, other = mint_token(roles=["admin"]), mint_token(roles=["customer"])
    for path in (PRIVATE, "/api/v1/auth/logout"):  # private and public routes alike
        response = await client.post(path, headers=[bearer(own), bearer(other)], json={})
        assert response.status_code == 400, path
        assert response.json()["error"] == "ambiguous_credentials"
    assert upstreams.hits == []


async def test_only_the_verified_token_is_forwarded(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    token = mint_token()
    seen = (await client.get(PRIVATE, headers=[bearer(token)])).json()["headers"]
    assert seen["authorization"] == [f"Bearer {token}"]
    assert seen["x-krika-edge"] == ["gateway-test-edge"]
    assert seen["x-krika-client-ip"] == ["127.0.0.1"]


async def test_a_clients_own_edge_headers_are_dropped(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    spoof = {"X-Krika-Edge": "guess", "X-Krika-Client-IP": "6.6.6.6"}
    seen = (
        await client.get(PRIVATE, headers={**spoof, "Authorization": f"Bearer {mint_token()}"})
    ).json()["headers"]
    assert seen["x-krika-edge"] == ["gateway-test-edge"]
    assert seen["x-krika-client-ip"] == ["127.0.0.1"]


# --- limits --------------------------------------------------------------------------------


async def test_a_body_over_the_groups_limit_is_413(
    start_gateway: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {mint_token()}"}
    async with start_gateway(body_limits={"orders": 5000}) as client:
        declared = await client.post(f"{PRIVATE}/upload", content=b"x" * 5001, headers=headers)
        assert declared.status_code == 413
        assert declared.json()["error"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 1000

        streamed = await client.post(f"{PRIVATE}/upload", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        # Other groups keep the default (1 MiB).
        fits = await client.post("/api/v1/payments/x", content=b"x" * 100_000, headers=headers)
        assert fits.status_code == 200
    assert [hit["path"] for hit in upstreams.hits] == ["/payments/x"]


async def test_an_oversized_head_is_431(client: httpx.AsyncClient) -> None:
    response = await client.get(PRIVATE, headers={"X-Big": "a" * 20_000})
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"


# --- upstream connections ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def closing_upstream() -> AsyncIterator[tuple[str, list[int]]]:
    """A service that answers one request per connection, keep-alive, then closes the
    connection when the next request arrives, without reading it: what a keep-alive timer
    firing just as the request is sent looks like. That request was never taken."""
    served: list[int] = []

    async def read_request(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            served.append(len(served) + 1)
            body = json.dumps({"n": len(served)}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            await reader.read(1)  # the next request begins: hang up on it
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.close()


async def test_a_dead_pooled_connection_is_retried_once_on_a_new_one(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {mint_token()}"}
    retries = REGISTRY.get_sample_value("gateway_upstream_retries_total") or 0.0
    async with (
        closing_upstream() as (url, served),
        start_gateway(orders_url=url) as client,
    ):
        for n in range(1, 4):
            response = await client.post(PRIVATE, json={"n": n}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json() == {"n": n}
    assert served == [1, 2, 3]  # each request reached the service exactly once
    assert REGISTRY.get_sample_value("gateway_upstream_retries_total") == retries + 1


async def test_a_redirect_never_shows_the_internal_address(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    response = await client.get(f"{PRIVATE}/redirect", headers=[bearer(mint_token())])
    assert response.status_code == 307
    assert response.headers["location"] == "/api/v1/orders/x?y=1"


# --- keys --------------------------------------------------------------------------------


async def test_an_unknown_kid_does_not_flush_the_verified_tokens(
    client: httpx.AsyncClient,
    upstreams: Upstreams,
    test_keys: TestKeys,
    mint_token: Callable[..., str],
) -> None:
    token = mint_token()
    assert (await client.get(PRIVATE, headers=[bearer(token)])).status_code == 200
    verified = REGISTRY.get_sample_value("gateway_token_verifications_total") or 0.0
    for _ in range(3):  # unknown kid: one refetch each (no cooldown in the tests)
        stranger = mint_token(key=test_keys.stranger)
        assert (await client.get(PRIVATE, headers=[bearer(stranger)])).status_code == 401
    assert upstreams.jwks_fetches >= 2
    assert (await client.get(PRIVATE, headers=[bearer(token)])).status_code == 200
    # Three strangers verified (and refused); the known token still came from the cache.
    assert REGISTRY.get_sample_value("gateway_token_verifications_total") == verified + 3


# --- live WebSockets -----------------------------------------------------------------------------


def ws_url(client: httpx.AsyncClient, query: str = "") -> str:
    return f"ws://{client.base_url.netloc.decode()}/socket.io/{query}"


async def test_a_different_query_token_is_refused_and_never_forwarded(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    mine, other = mint_token(), mint_token()
    cases = [
        ({"Authorization": f"Bearer {mine}"}, f"?access_token={other}"),
        ({}, f"?access_token={mine}&access_token={other}"),
    ]
    for headers, query in cases:
        async with connect(ws_url(client, query), additional_headers=headers, proxy=None) as ws:
            payload, code, reason = await refusal(ws)
        assert (code, reason) == (1008, "ambiguous_credentials")
        assert payload["message"] == "ambiguous_credentials"

    async with connect(
        ws_url(client, f"?room=7&access_token={mine}"),
        additional_headers={"Authorization": f"Bearer {mine}"},
        proxy=None,
    ) as ws:
        hello = json.loads(await ws.recv())
    assert hello["authorizations"] == [f"Bearer {mine}"]
    assert hello["query"] == "room=7"  # the token is not in the upstream's URL
    assert hello["x-krika-edge"] == "gateway-test-edge"


async def test_a_live_socket_is_closed_when_the_user_is_suspended(
    client: httpx.AsyncClient, mint_token: Callable[..., str], redis_client: Redis
) -> None:
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {mint_token(sub=user, ver=1)}"}
    bystander = {"Authorization": f"Bearer {mint_token()}"}
    async with (
        connect(ws_url(client), additional_headers=headers, proxy=None) as ws,
        connect(ws_url(client), additional_headers=bystander, proxy=None) as other,
    ):
        await ws.recv()
        await other.recv()
        await AccessMarks(redis_client, ttl=900).record(user, 2, suspended=True)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "account_suspended")
        await other.send("still here")
        assert await other.recv() == "echo:still here"


async def test_a_live_socket_is_closed_when_its_token_expires(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {mint_token(ttl=2)}"}
    async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
        await ws.recv()
        await ws.send("ping")
        assert await ws.recv() == "echo:ping"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 6)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token_expired")


async def test_sockets_opened_before_a_missed_announcement_are_still_closed(
    start_gateway: StartGateway, mint_token: Callable[..., str], redis_client: Redis
) -> None:
    """A mark written while nobody listened (no PUBLISH reached this replica) is found when
    the replica (re)subscribes: it reads the marks of every user with a live socket."""
    user = uuid.uuid4()
    async with start_gateway() as client:
        headers = {"Authorization": f"Bearer {mint_token(sub=user, ver=1)}"}
        async with connect(ws_url(client), additional_headers=headers, proxy=None) as ws:
            await ws.recv()
            await redis_client.hset(f"krika:access:{user}", mapping={"v": 5, "s": 0})
            await redis_client.expire(f"krika:access:{user}", 60)
            # Force the watcher to resubscribe: drop its connection from the server side.
            for entry in await redis_client.client_list():
                if entry.get("cmd") in ("subscribe", "ssubscribe") or entry.get("sub") == "1":
                    await redis_client.client_kill_filter(_id=entry["id"])
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 8)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token_revoked")
