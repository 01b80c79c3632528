"""Who may hold a realtime connection to chat itself (chat checks the token again, behind the
gateway), and what ends one: an expired token, too many connections, a packet over the limit,
a client that does not read what it is sent."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import socketio
from fastapi import FastAPI

from chat import service
from krika_common.testing import eventually

from .conftest import replica
from .factories import User, user
from .realtime import TIMEOUT, Peer, peers

pytestmark = pytest.mark.usefixtures("mongo")


async def refusal(url: str, **connect: Any) -> Any:
    """What chat answers a connection it refuses (the CONNECT_ERROR's data)."""
    sio = socketio.AsyncClient(reconnection=False)
    seen: list[Any] = []

    async def connect_error(data: Any) -> None:
        seen.append(data)

    sio.on("connect_error", connect_error)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            url,
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=TIMEOUT,
            **connect,
        )
    await sio.disconnect()
    assert len(seen) == 1
    assert seen[0]["message"] == seen[0]["data"]["error"]
    return seen[0]["data"]


async def test_chat_verifies_the_token_itself(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str], test_keys: Any
) -> None:
    someone = uuid.uuid4()
    good = mint_token(someone)
    async with replica(make_app()) as (url, hub):
        cases = [
            ({}, "unauthorized"),
            ({"headers": {"Authorization": "Bearer not.a.token"}}, "invalid_token"),
            (
                {"headers": {"Authorization": f"Bearer {mint_token(someone, ttl=-60)}"}},
                "token_expired",
            ),
            (
                {"headers": {"Authorization": f"Bearer {mint_token(key=test_keys.stranger)}"}},
                "invalid_token",
            ),
        ]
        for kwargs, code in cases:
            answer = await refusal(url, **kwargs)
            assert answer["error"] == code, (kwargs, answer)
        # Two different tokens (header and query): refused, whichever is valid.
        other = mint_token(uuid.uuid4())
        answer = await refusal(
            f"{url}?access_token={other}", headers={"Authorization": f"Bearer {good}"}
        )
        assert answer["error"] == "invalid_token"
        answer = await refusal(f"{url}?access_token={good}&access_token={other}")
        assert answer["error"] == "invalid_token"
        assert hub.connections == {}
        # Long-polling is not served (WebSocket only).
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert r.status_code == 400


async def test_a_connection_ends_when_its_token_expires(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str]
) -> None:
    short = User(uuid.uuid4(), mint_token(ttl=2))
    async with replica(make_app()) as (url, hub), peers(short) as (peer,):
        await peer.connect(url)
        assert len(hub.connections) == 1
        await asyncio.wait_for(peer.disconnected.wait(), 10)
        assert peer.received("error") == [{"error": "token_expired", "detail": "token expired"}]
        assert hub.connections == {}


async def test_connections_per_user_are_limited(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str]
) -> None:
    someone = await user(mint_token)
    async with (
        replica(make_app(max_connections_per_user=2)) as (url, _),
        replica(make_app(max_connections_per_user=2)) as (other_url, _),
        peers(someone, someone) as (first, second),
    ):
        await first.connect(url)
        await second.connect(other_url)  # the limit counts every replica
        answer = await refusal(f"{url}?access_token={someone.token}")
        assert answer["error"] == "too_many_connections"
        await first.close()
        await eventually(lambda: first.disconnected.is_set(), what="closed")
        async with peers(someone) as (third,):
            await third.connect(url)  # a freed place can be taken again
            assert third.sio.connected


async def test_a_packet_over_the_limit_ends_the_connection(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str]
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    async with replica(make_app(socket_max_packet_bytes=8192)) as (url, hub), peers(a) as (pa,):
        await pa.connect(url)
        await pa.sio.emit("message", {"conversation_id": str(uuid.uuid4()), "body": "x" * 9000})
        await asyncio.wait_for(pa.disconnected.wait(), TIMEOUT)
        assert hub.connections == {}
        del b


async def stalled_connection(url: str, token: str) -> asyncio.StreamWriter:
    """A WebSocket made by hand that connects to Socket.IO and then never reads again (a small
    receive buffer, and asyncio stops reading once 2 KiB wait in its stream)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /socket.io/?EIO=4&transport=websocket&access_token={token} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = b"40"  # Socket.IO connect, in a masked text frame
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    return writer


async def test_a_client_that_does_not_read_is_dropped_not_buffered(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str]
) -> None:
    """A client that stops reading: once `socket_max_queued_packets` wait for it, the server
    drops it. Its user's other connection keeps receiving everything."""
    someone = await user(mint_token)
    async with (
        replica(make_app(socket_max_queued_packets=16)) as (url, hub),
        peers(someone) as (reader,),
    ):
        await reader.connect(url)
        writer = await stalled_connection(url, someone.token)
        try:
            await eventually(lambda: len(hub.connections) == 2, what="both connected")
            big = {"body": "y" * 20_000}
            sent = 0
            while len(hub.connections) == 2 and sent < 2000:
                await hub.to_users("message", big, [someone.key])
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0.05)  # let the fan-out reach the sockets
            await eventually(lambda: len(hub.connections) == 1, within=TIMEOUT, what="dropped")
            assert sent < 2000
        finally:
            writer.close()
        assert [c.sid for c in hub.connections.values()] == [reader.sio.get_sid()]
        await hub.to_users("message", {"body": "still here"}, [someone.key])
        await reader.expect("message", lambda d: d == {"body": "still here"})
        assert len(reader.received("message")) == sent + 1


async def test_presence_is_shared_across_replicas_and_with_partners_only(
    make_app: Callable[..., FastAPI], mint_token: Callable[..., str]
) -> None:
    a, b, stranger = await user(mint_token), await user(mint_token), await user(mint_token)
    async with (
        replica(make_app()) as (url1, _),
        replica(make_app()) as (url2, _),
        httpx.AsyncClient(base_url=url1) as http,
    ):
        r = await http.post(
            "/chat/conversations", json={"participant_ids": [b.key]}, headers=a.auth
        )
        assert r.status_code == 201
        peer = Peer(b)
        try:
            await peer.connect(url2)

            async def presence(who: User) -> Any:
                r = await http.post("/chat/presence", json={"user_ids": [b.key]}, headers=who.auth)
                return r.json()["items"]

            assert await presence(a) == [{"user_id": b.key, "online": True}]
            assert await presence(stranger) == [{"user_id": b.key, "online": False}]
        finally:
            await peer.close()

        async def offline() -> bool:
            return bool(await presence(a) == [{"user_id": b.key, "online": False}])

        await eventually(offline, within=TIMEOUT, what="offline")


async def test_a_slow_store_neither_costs_the_connection_nor_queues_without_bound(
    make_app: Callable[..., FastAPI],
    mint_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While storage is slow (here: every conversation look-up takes 1.5 s), the connection's
    events wait their turn, but Engine.IO keeps answering pings (0.4 s interval, 0.6 s
    timeout): the socket stays up. Beyond `socket_max_in_flight` waiting events, the next ones
    are refused at once."""
    a, b = await user(mint_token), await user(mint_token)
    slow_down = asyncio.Event()
    lookup = service.conversation_for

    async def slow_lookup(caller: str, conversation_id: Any) -> Any:
        if slow_down.is_set():
            await asyncio.sleep(1.5)
        return await lookup(caller, conversation_id)

    monkeypatch.setattr(service, "conversation_for", slow_lookup)
    limits = {
        "socket_ping_interval": 0.4,
        "socket_ping_timeout": 0.6,
        "socket_max_in_flight": 3,
        "socket_event_burst": 100,
    }
    async with (
        replica(make_app(**limits)) as (url, hub),
        httpx.AsyncClient(base_url=url) as http,
        peers(a) as (pa,),
    ):
        r = await http.post(
            "/chat/conversations", json={"participant_ids": [b.key]}, headers=a.auth
        )
        conversation = r.json()["id"]
        await pa.connect(url)
        slow_down.set()
        first = asyncio.create_task(
            pa.call("message", {"conversation_id": conversation, "body": "slow one"})
        )
        await asyncio.sleep(0.2)  # it is sent (and waits on the slow store) before the rest
        for _ in range(10):
            await pa.sio.emit("typing", {"conversation_id": conversation})
        stored = await asyncio.wait_for(first, 10)
        assert stored["body"] == "slow one"
        refused = [e["error"] for e in pa.received("error")]
        assert refused.count("rate_limited") >= 7  # 3 may wait: the message and 2 typings
        await asyncio.sleep(1.0)  # more ping rounds than the timeout while typings finish
        assert pa.sio.connected
        assert len(hub.connections) == 1
