"""Realtime through the gateway, with a real Socket.IO client: two users on two chat replicas
exchange messages, typing and read receipts; offline delivery is history; a resend is stored
and delivered once; outsiders get nothing; bad input gets an error and the socket survives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chat.documents import Message

from .factories import User, user
from .realtime import TIMEOUT, peers, two_replicas

pytestmark = pytest.mark.usefixtures("mongo")


async def open_direct(gateway: str, a: User, b: User) -> str:
    async with httpx.AsyncClient(base_url=gateway) as http:
        r = await http.post(
            "/api/v1/chat/conversations", json={"participant_ids": [b.key]}, headers=a.auth
        )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


async def history(gateway: str, who: User, conversation: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway) as http:
        return await http.get(
            f"/api/v1/chat/conversations/{conversation}/messages", headers=who.auth
        )


async def test_two_users_on_two_replicas_chat_in_real_time(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b = await user(mint_token), await user(mint_token, "provider")
    async with two_replicas(make_app, gateway_in_front) as (one, two), peers(a, b) as (pa, pb):
        conversation = await open_direct(one.url, a, b)
        await pa.connect(one.url)  # token in the query, as a browser sends it
        await pb.connect(two.url, via="header")
        assert {c.user_id for c in one.hub.connections.values()} == {a.key}
        assert {c.user_id for c in two.hub.connections.values()} == {b.key}
        # a learns that b came online (b shares a conversation with a).
        await pa.expect("presence", lambda d: d == {"user_id": b.key, "online": True})

        stored = await pa.call(
            "message",
            {"conversation_id": conversation, "body": "Hello from one", "client_id": "m1"},
        )
        assert stored["body"] == "Hello from one"
        assert stored["sender_id"] == a.key
        assert stored["conversation_id"] == conversation
        got = await pb.expect("message")
        assert got == stored
        assert pa.received("message") == []  # the sender has it in the ack

        assert await pb.call("typing", {"conversation_id": conversation}) == {"ok": True}
        typing = await pa.expect("typing")
        assert typing == {"conversation_id": conversation, "user_id": b.key}

        read = await pb.call("read", {"conversation_id": conversation, "message_id": stored["id"]})
        assert read == {
            "conversation_id": conversation,
            "message_id": stored["id"],
            "user_id": b.key,
        }
        assert await pa.expect("read") == read

        # The other way, and through REST: the socket of the other replica gets it as well.
        async with httpx.AsyncClient(base_url=two.url) as http:
            r = await http.post(
                f"/api/v1/chat/conversations/{conversation}/messages",
                json={"body": "Reply over REST"},
                headers=b.auth,
            )
        assert r.status_code == 201
        assert (await pa.expect("message"))["id"] == r.json()["id"]

        await pb.close()
        await pa.expect("presence", lambda d: d == {"user_id": b.key, "online": False})


async def test_a_message_sent_while_offline_is_in_the_history(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    async with two_replicas(make_app, gateway_in_front) as (one, two), peers(a, b) as (pa, pb):
        conversation = await open_direct(one.url, a, b)
        await pa.connect(one.url)
        stored = await pa.call(
            "message", {"conversation_id": conversation, "body": "Are you there?"}
        )
        first = await Message.get(stored["id"])
        assert first is not None
        assert first.pending_event is not None
        assert first.pending_event["offline_recipient_ids"] == [b.key]

        await pb.connect(two.url)
        r = await history(two.url, b, conversation)
        assert [m["id"] for m in r.json()["items"]] == [stored["id"]]
        async with httpx.AsyncClient(base_url=two.url) as http:
            listed = (await http.get("/api/v1/chat/conversations", headers=b.auth)).json()
        assert listed["items"][0]["unread_count"] == 1

        online = await pa.call("message", {"conversation_id": conversation, "body": "Now?"})
        second = await Message.get(online["id"])
        assert second is not None
        assert second.pending_event is not None
        assert second.pending_event["offline_recipient_ids"] == []
        assert second.pending_event["recipient_ids"] == [b.key]


async def test_a_resend_with_the_same_client_id_is_stored_and_delivered_once(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    async with two_replicas(make_app, gateway_in_front) as (one, two), peers(a, b) as (pa, pb):
        conversation = await open_direct(one.url, a, b)
        await pb.connect(two.url)
        await pa.connect(one.url)
        payload = {"conversation_id": conversation, "body": "Only once", "client_id": "resend-1"}
        first = await pa.call("message", payload)
        # The connection drops before the client saw its ack; it reconnects (on the other
        # replica this time) and sends again.
        await pa.close()
        async with peers(a) as (again,):
            await again.connect(two.url)
            second = await again.call("message", payload)
        assert second == first
        await pb.expect("message")
        await asyncio.sleep(0.5)  # time for a second delivery, if there were one
        assert [m["id"] for m in pb.received("message")] == [first["id"]]
        assert await Message.find({"conversation_id": conversation}).count() == 1


async def test_an_outsider_can_neither_read_nor_post(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b, outsider = await user(mint_token), await user(mint_token), await user(mint_token)
    async with (
        two_replicas(make_app, gateway_in_front) as (one, two),
        peers(a, b, outsider) as (pa, pb, po),
    ):
        conversation = await open_direct(one.url, a, b)
        await pa.connect(one.url)
        await pb.connect(two.url)
        await po.connect(two.url)
        refused = await po.call("message", {"conversation_id": conversation, "body": "hi all"})
        assert refused["error"] == "conversation_not_found"
        await po.sio.emit("typing", {"conversation_id": conversation})
        error = await po.expect("error")
        assert error["error"] == "conversation_not_found"
        stored = await pa.call("message", {"conversation_id": conversation, "body": "secret"})
        await po.sio.emit("read", {"conversation_id": conversation, "message_id": stored["id"]})
        await eventually_two_errors(po)
        await pb.expect("message")
        await asyncio.sleep(0.3)
        assert po.received("message") == []
        assert po.received("typing") == []
        r = await history(one.url, outsider, conversation)
        assert (r.status_code, r.json()["error"]) == (404, "conversation_not_found")
        assert await Message.find({"conversation_id": conversation}).count() == 1
        assert po.sio.connected


async def eventually_two_errors(peer: Any) -> None:
    from krika_common.testing import eventually

    await eventually(lambda: len(peer.received("error")) >= 2, within=TIMEOUT, what="errors")


async def test_bad_input_gets_its_error_and_the_connection_survives(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    async with two_replicas(make_app, gateway_in_front) as (one, _), peers(a) as (pa,):
        conversation = await open_direct(one.url, a, b)
        await pa.connect(one.url)
        acked = [
            ("shout", {"conversation_id": conversation}, "unknown_event"),
            ("message", "just a string", "invalid_payload"),
            ("message", ["a", "list"], "invalid_payload"),
            ("message", {"body": "no conversation"}, "invalid_payload"),
            ("message", {"conversation_id": "not-a-uuid", "body": "x"}, "invalid_payload"),
            ("message", {"conversation_id": conversation, "body": 42}, "invalid_payload"),
            (
                "message",
                {"conversation_id": conversation, "body": "x", "admin": True},
                "invalid_payload",
            ),
            ("message", {"conversation_id": conversation, "body": "x" * 4001}, "message_too_long"),
            ("message", {"conversation_id": conversation, "body": ""}, "empty_message"),
            (
                "message",
                {"conversation_id": str(uuid.uuid4()), "body": "x"},
                "conversation_not_found",
            ),
            ("typing", {}, "invalid_payload"),
            (
                "read",
                {"conversation_id": conversation, "message_id": str(uuid.uuid4())},
                "message_not_found",
            ),
        ]
        for event, data, code in acked:
            answer = await pa.call(event, data)
            assert answer["error"] == code, (event, data, answer)
            assert isinstance(answer["detail"], str)
        # Without an ack, the refusal comes as an `error` event.
        await pa.sio.emit("shout", {"x": 1})
        await pa.sio.emit("message", {"conversation_id": conversation, "body": "y" * 5000})
        await eventually_two_errors(pa)
        assert [e["error"] for e in pa.received("error")] == ["unknown_event", "message_too_long"]

        assert pa.sio.connected
        stored = await pa.call("message", {"conversation_id": conversation, "body": "still here"})
        assert stored["body"] == "still here"
        assert await Message.find({"conversation_id": conversation}).count() == 1


async def test_a_flooding_client_is_rate_limited_then_disconnected(
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    limits = {"socket_event_burst": 5, "socket_event_rate": 1.0, "socket_max_refusals": 10}
    async with two_replicas(make_app, gateway_in_front, **limits) as (one, _), peers(a) as (pa,):
        conversation = await open_direct(one.url, a, b)
        await pa.connect(one.url)
        for _ in range(40):
            if not pa.sio.connected:
                break
            await pa.sio.emit("typing", {"conversation_id": conversation})
        await asyncio.wait_for(pa.disconnected.wait(), TIMEOUT)
        errors = [e["error"] for e in pa.received("error")]
        assert errors.count("rate_limited") >= 10
        assert set(errors) == {"rate_limited"}
        assert one.hub.connections == {}
