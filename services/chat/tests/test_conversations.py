"""The REST API: conversations (order, direct, group), messages, history, reads, attachments -
and that nobody outside a conversation can read or post in it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from chat import service
from chat.documents import ChatUser, Message
from krika_common.testing.http import app_client
from krika_common.testing.storage import image_bytes

from .factories import User, order_conversation, user


@pytest_asyncio.fixture
async def api(make_app: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_app()) as client:
        yield client


async def open_direct(api: httpx.AsyncClient, a: User, b: User) -> str:
    r = await api.post("/chat/conversations", json={"participant_ids": [b.key]}, headers=a.auth)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


async def send(api: httpx.AsyncClient, who: User, conversation: str, **body: Any) -> httpx.Response:
    return await api.post(
        f"/chat/conversations/{conversation}/messages", json=body, headers=who.auth
    )


async def test_an_orders_conversation_is_its_customers_and_providers_only(
    api: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    customer, provider = await user(mint_token), await user(mint_token, "provider")
    outsider = await user(mint_token)
    order_id = await order_conversation(customer, provider)

    r = await api.post(
        "/chat/conversations", json={"order_id": str(order_id)}, headers=customer.auth
    )
    assert r.status_code == 200, r.text  # it exists since the order was placed
    conversation = r.json()
    assert conversation["order_id"] == str(order_id)
    assert set(conversation["participant_ids"]) == {customer.key, provider.key}
    again = await api.post(
        "/chat/conversations",
        json={"order_id": str(order_id), "participant_ids": [customer.key]},
        headers=provider.auth,
    )
    assert again.status_code == 200
    assert again.json()["id"] == conversation["id"]

    # An outsider: as if it did not exist; nobody may add them.
    r = await api.post(
        "/chat/conversations", json={"order_id": str(order_id)}, headers=outsider.auth
    )
    assert (r.status_code, r.json()["error"]) == (404, "conversation_not_found")
    r = await api.post(
        "/chat/conversations",
        json={"order_id": str(order_id), "participant_ids": [outsider.key]},
        headers=customer.auth,
    )
    assert (r.status_code, r.json()["error"]) == (422, "invalid_participants")
    # An order chat has not heard of yet.
    r = await api.post(
        "/chat/conversations", json={"order_id": str(uuid.uuid4())}, headers=customer.auth
    )
    assert (r.status_code, r.json()["error"]) == (409, "order_not_ready")
    assert r.headers["Retry-After"] == "2"


async def test_direct_and_group_conversations(
    api: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    a, b, c = await user(mint_token), await user(mint_token, "provider"), await user(mint_token)
    r = await api.post("/chat/conversations", json={"participant_ids": [b.key]}, headers=a.auth)
    assert r.status_code == 201, r.text
    direct = r.json()
    assert direct["participant_ids"] == [a.key, b.key]
    assert direct["order_id"] is None
    # The same pair, either way round, finds the same conversation.
    r = await api.post("/chat/conversations", json={"participant_ids": [a.key]}, headers=b.auth)
    assert (r.status_code, r.json()["id"]) == (200, direct["id"])

    group = await api.post(
        "/chat/conversations", json={"participant_ids": [b.key, c.key, b.key]}, headers=a.auth
    )
    assert group.status_code == 201
    assert sorted(group.json()["participant_ids"]) == sorted([a.key, b.key, c.key])

    cases = [
        ({"participant_ids": []}, 422, "invalid_participants"),
        ({"participant_ids": [a.key]}, 422, "invalid_participants"),  # only oneself
        ({"participant_ids": [str(uuid.uuid4())]}, 422, "unknown_participant"),
        ({"participant_ids": ["not-a-uuid"]}, 422, "validation_error"),
        ({"participant_ids": [b.key], "extra": 1}, 422, "validation_error"),
    ]
    for body, status, error in cases:
        r = await api.post("/chat/conversations", json=body, headers=a.auth)
        assert (r.status_code, r.json()["error"]) == (status, error), body
    many = [str(uuid.uuid4()) for _ in range(25)]
    r = await api.post("/chat/conversations", json={"participant_ids": many}, headers=a.auth)
    assert (r.status_code, r.json()["error"]) == (422, "too_many_participants")
    r = await api.post("/chat/conversations", json={"participant_ids": [b.key]})
    assert r.status_code == 401

    listed = await api.get("/chat/conversations", headers=c.auth)
    assert [x["id"] for x in listed.json()["items"]] == [group.json()["id"]]


async def test_messages_history_and_unread_counts(
    api: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    a, b = await user(mint_token), await user(mint_token, "provider")
    conversation = await open_direct(api, a, b)
    sent = []
    for i in range(7):
        r = await send(api, a if i % 2 == 0 else b, conversation, body=f"message {i}")
        assert r.status_code == 201, r.text
        sent.append(r.json())
    assert sent[0]["sender_id"] == a.key
    assert sent[0]["conversation_id"] == conversation

    # Newest first, page by page, nothing skipped or repeated.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await api.get(
            f"/chat/conversations/{conversation}/messages", params=params, headers=b.auth
        )
        assert page.status_code == 200, page.text
        seen += [m["body"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"message {i}" for i in reversed(range(7))]

    # b sent 3 (read by sending), a sent 4: b has 1 unread after their last own message.
    listed = (await api.get("/chat/conversations", headers=b.auth)).json()["items"]
    assert listed[0]["id"] == conversation
    assert listed[0]["last_message"]["body"] == "message 6"
    assert listed[0]["unread_count"] == 1
    r = await api.post(
        f"/chat/conversations/{conversation}/read",
        json={"message_id": sent[6]["id"]},
        headers=b.auth,
    )
    assert r.status_code == 200
    assert r.json() == {
        "conversation_id": conversation,
        "message_id": sent[6]["id"],
        "user_id": b.key,
    }
    # A read receipt never moves back.
    r = await api.post(
        f"/chat/conversations/{conversation}/read",
        json={"message_id": sent[0]["id"]},
        headers=b.auth,
    )
    assert r.status_code == 200
    one = (await api.get(f"/chat/conversations/{conversation}", headers=b.auth)).json()
    assert one["unread_count"] == 0
    r = await api.post(
        f"/chat/conversations/{conversation}/read",
        json={"message_id": str(uuid.uuid4())},
        headers=b.auth,
    )
    assert (r.status_code, r.json()["error"]) == (404, "message_not_found")

    for bad in ("garbage", "eyJhIjoxfQ", "WyJ4IiwieSJd"):
        r = await api.get(
            f"/chat/conversations/{conversation}/messages", params={"cursor": bad}, headers=a.auth
        )
        assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor"), bad


async def test_message_rules_and_client_id(
    api: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    a, b = await user(mint_token), await user(mint_token, "provider")
    conversation = await open_direct(api, a, b)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"body": "x" * 4001}, 422, "message_too_long"),
        ({"body": "   "}, 422, "empty_message"),
        ({"body": "hi", "attachment_ids": [str(uuid.uuid4())]}, 422, "invalid_attachment"),
        ({"body": "hi", "client_id": "c" * 65}, 422, "validation_error"),
        ({"body": 5}, 422, "validation_error"),
        ({"body": "hi", "sender_id": a.key}, 422, "validation_error"),
    ]
    for body, status, error in cases:
        r = await send(api, a, conversation, **body)
        assert (r.status_code, r.json()["error"]) == (status, error), body
    assert await Message.find_all().count() == 0

    first = await send(api, a, conversation, body="once", client_id="c-1")
    assert first.status_code == 201
    resend = await send(api, a, conversation, body="once", client_id="c-1")
    assert (resend.status_code, resend.json()["id"]) == (200, first.json()["id"])
    # The same client_id from someone else is their own message.
    other = await send(api, b, conversation, body="once", client_id="c-1")
    assert other.status_code == 201
    reused = await send(api, a, conversation, body="something else", client_id="c-1")
    assert (reused.status_code, reused.json()["error"]) == (409, "client_id_reused")
    assert await Message.find_all().count() == 2


async def test_outsiders_can_neither_read_nor_post(
    api: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    a, b, outsider = await user(mint_token), await user(mint_token), await user(mint_token)
    conversation = await open_direct(api, a, b)
    assert (await send(api, a, conversation, body="private")).status_code == 201
    attempts = [
        api.get(f"/chat/conversations/{conversation}", headers=outsider.auth),
        api.get(f"/chat/conversations/{conversation}/messages", headers=outsider.auth),
        send(api, outsider, conversation, body="let me in"),
        api.post(
            f"/chat/conversations/{conversation}/read",
            json={"message_id": str(uuid.uuid4())},
            headers=outsider.auth,
        ),
        api.post(
            f"/chat/conversations/{conversation}/attachments",
            files={"file": ("a.png", image_bytes("PNG"), "image/png")},
            headers=outsider.auth,
        ),
        api.get(f"/chat/conversations/{uuid.uuid4()}/messages", headers=a.auth),
    ]
    for attempt in attempts:
        r = await attempt
        assert (r.status_code, r.json()["error"]) == (404, "conversation_not_found")
    assert (await api.get("/chat/conversations", headers=outsider.auth)).json()["items"] == []
    assert await Message.find_all().count() == 1
    # Presence is told only of people one shares a conversation with.
    r = await api.post("/chat/presence", json={"user_ids": [a.key]}, headers=outsider.auth)
    assert r.json()["items"] == [{"user_id": a.key, "online": False}]
    for bad in ([], ["nope"], [a.key] * 101):
        r = await api.post("/chat/presence", json={"user_ids": bad}, headers=a.auth)
        assert (r.status_code, r.json()["error"]) == (422, "validation_error"), bad


async def test_attachments(api: httpx.AsyncClient, mint_token: Callable[..., str]) -> None:
    a, b = await user(mint_token), await user(mint_token)
    conversation = await open_direct(api, a, b)
    other = await open_direct(api, a, await user(mint_token))
    png = image_bytes("PNG")
    up = await api.post(
        f"/chat/conversations/{conversation}/attachments",
        files={"file": ("a.png", png, "image/png")},
        headers=a.auth,
    )
    assert up.status_code == 201, up.text
    attachment = up.json()["id"]
    bad = await api.post(
        f"/chat/conversations/{conversation}/attachments",
        files={"file": ("a.txt", b"plain text", "text/plain")},
        headers=a.auth,
    )
    assert bad.status_code == 415

    # Not b's to send, not for another conversation.
    r = await send(api, b, conversation, body="mine?", attachment_ids=[attachment])
    assert r.json()["error"] == "invalid_attachment"
    r = await send(api, a, other, body="there?", attachment_ids=[attachment])
    assert r.json()["error"] == "invalid_attachment"
    r = await send(api, a, conversation, body="a picture", attachment_ids=[attachment])
    assert r.status_code == 201, r.text
    sent = r.json()["attachments"]
    assert [(x["id"], x["content_type"]) for x in sent] == [(attachment, "image/png")]
    # Sent once only.
    r = await send(api, a, conversation, body="again", attachment_ids=[attachment])
    assert r.json()["error"] == "invalid_attachment"

    history = await api.get(f"/chat/conversations/{conversation}/messages", headers=b.auth)
    url = history.json()["items"][0]["attachments"][0]["url"]
    assert url.startswith("/api/v1/chat/files/attachments/")
    opened = await api.get(url.removeprefix("/api/v1"))
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/png"
    signature = url.rsplit("sig=", 1)[1]
    forged = ("1" if signature[0] == "0" else "0") + signature[1:]
    tampered = await api.get(url.removeprefix("/api/v1").replace(signature, forged))
    assert tampered.status_code == 403


@pytest.mark.parametrize("limit", [0, 51])
async def test_page_size_is_bounded(
    api: httpx.AsyncClient, mint_token: Callable[..., str], limit: int
) -> None:
    a = await user(mint_token)
    r = await api.get("/chat/conversations", params={"limit": limit}, headers=a.auth)
    assert r.status_code == 422


@pytest.mark.usefixtures("mongo")
async def test_registered_users_come_from_identitys_event_once() -> None:
    user_id = str(uuid.uuid4())
    await service.register_user(user_id, ["customer"])
    await service.register_user(user_id, ["admin"])  # a replay, or a late duplicate
    found = await ChatUser.get(user_id)
    assert found is not None
    assert found.roles == ["customer"]
