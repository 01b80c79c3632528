"""Actions on an order through the API: who may do what, history, the events each transition
records (outbox), deliveries with their files, and two racing transitions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.testing.storage import PDF, image_bytes

from .factories import Actor, Market, clear_outbox, outbox_envelopes, outbox_types, payment

CHANGED = "orders.order_status_changed"


async def status_changes(engine: AsyncEngine) -> list[tuple[str | None, str, str]]:
    return [
        (e["data"]["from_status"], e["data"]["to_status"], e["data"]["actor_role"])
        for e in await outbox_envelopes(engine, CHANGED)
    ]


async def upload(
    market: Market, order: dict[str, Any], who: Actor, content: bytes = PDF
) -> httpx.Response:
    return await market.client.post(
        f"/orders/{order['id']}/attachments",
        files={"file": ("work.pdf", content, "application/pdf")},
        headers=who.headers,
    )


async def test_the_whole_lifecycle_with_a_revision(
    market: Market, clean_db: AsyncEngine, admin: Actor
) -> None:
    customer, provider = market.customer, market.provider
    order = await market.order()  # package 0: one revision
    await clear_outbox(clean_db)

    await market.deliver(payment(order))
    paid = (await market.client.get(f"/orders/{order['id']}", headers=customer.headers)).json()
    assert (paid["status"], paid["paid"]) == ("paid", True)
    assert await outbox_types(clean_db) == [CHANGED]

    started = await market.act(order, "start", provider)
    assert started["status"] == "in_progress"
    assert started["started_at"] is not None

    file = await upload(market, order, provider)
    assert file.status_code == 201, file.text
    first = await market.act(
        order, "deliver", provider, {"message": "Draft", "attachment_ids": [file.json()["id"]]}
    )
    assert first["status"] == "delivered"

    revision = await market.act(order, "request-revision", customer, {"note": "Brighter"})
    assert (revision["status"], revision["revisions_used"]) == ("in_progress", 1)
    await market.act(order, "deliver", provider, {"message": "Final"})
    # The one revision is spent.
    again = await market.post(order, "request-revision", customer, {"note": "More"})
    assert (again.status_code, again.json()["error"]) == (409, "invalid_transition")

    done = await market.act(order, "complete", customer)
    assert done["status"] == "completed"
    assert done["completed_at"] is not None

    assert await status_changes(clean_db) == [
        ("pending", "paid", "system"),
        ("paid", "in_progress", "provider"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "in_progress", "customer"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "completed", "customer"),
    ]
    assert (await outbox_types(clean_db))[-2:] == [CHANGED, "orders.order_completed"]
    (completed,) = await outbox_envelopes(clean_db, "orders.order_completed")
    assert completed["data"]["price"] == order["price"]
    assert completed["data"]["service_id"] == order["service_id"]

    history = await market.history(order, provider)
    assert [(h["from_status"], h["to_status"], h["actor_role"]) for h in history] == [
        (None, "pending", "customer"),
        ("pending", "paid", "system"),
        ("paid", "in_progress", "provider"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "in_progress", "customer"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "completed", "customer"),
    ]
    assert history[4]["note"] == "Brighter"
    assert history[4]["actor_id"] == str(customer.id)
    assert history[1]["actor_id"] is None
    assert history == await market.history(order, admin)

    deliveries = await market.client.get(
        f"/orders/{order['id']}/deliveries", headers=customer.headers
    )
    assert deliveries.status_code == 200, deliveries.text
    one, two = deliveries.json()["items"]
    assert (one["number"], one["message"], two["number"], two["message"]) == (
        1,
        "Draft",
        2,
        "Final",
    )
    (attachment,) = one["attachments"]
    assert attachment["id"] == file.json()["id"]
    assert attachment["content_type"] == "application/pdf"
    # The signed link opens the file (the service's own route, as the gateway forwards it).
    link = urlsplit(attachment["url"])
    assert link.path.startswith("/api/v1/orders/files/")
    opened = await market.client.get(
        f"{link.path.removeprefix('/api/v1')}?{link.query}"  # no token needed
    )
    assert opened.status_code == 200
    assert opened.content == PDF
    forged = await market.client.get(f"{link.path.removeprefix('/api/v1')}?expires=1&sig=x")
    assert forged.status_code == 403

    # Completed is final.
    for action, who in (("cancel", admin), ("start", provider), ("complete", customer)):
        final = await market.post(order, action, who, {} if action == "cancel" else None)
        assert (final.status_code, final.json()["error"]) == (409, "invalid_transition")


@pytest.mark.parametrize(
    ("state", "action", "who", "allowed"),
    [
        ("pending", "start", "provider", False),
        ("pending", "cancel", "provider", False),
        ("pending", "cancel", "customer", True),
        ("pending", "cancel", "admin", True),
        ("paid", "start", "customer", False),
        ("paid", "start", "admin", False),
        ("paid", "deliver", "provider", False),
        ("paid", "complete", "customer", False),
        ("paid", "cancel", "provider", True),
        ("paid", "cancel", "customer", True),
        ("in_progress", "cancel", "customer", False),
        ("in_progress", "cancel", "provider", False),
        ("in_progress", "cancel", "admin", True),
        ("in_progress", "deliver", "customer", False),
        ("in_progress", "complete", "customer", False),
        ("delivered", "complete", "provider", False),
        ("delivered", "request-revision", "provider", False),
        ("delivered", "cancel", "customer", False),
        ("delivered", "cancel", "admin", True),
        ("delivered", "start", "provider", False),
    ],
)
async def test_who_may_do_what_through_the_api(
    market: Market, admin: Actor, state: str, action: str, who: str, allowed: bool
) -> None:
    order = await market.order()
    if state != "pending":
        await market.deliver(payment(order))
    if state in ("in_progress", "delivered"):
        await market.act(order, "start", market.provider)
    if state == "delivered":
        await market.act(order, "deliver", market.provider, {"message": "Done"})
    actor = {"customer": market.customer, "provider": market.provider, "admin": admin}[who]
    body: dict[str, Any] | None = {"message": "x"} if action == "deliver" else None
    if action in ("cancel", "request-revision"):
        body = {}
    answer = await market.post(order, action, actor, body)
    if allowed:
        assert answer.status_code == 200, answer.text
    else:
        assert (answer.status_code, answer.json()["error"]) == (409, "invalid_transition")


@pytest.mark.parametrize(("paid", "who"), [(False, "customer"), (True, "provider")])
async def test_cancellation_says_whether_money_goes_back(
    market: Market, clean_db: AsyncEngine, paid: bool, who: str
) -> None:
    order = await (market.paid_order() if paid else market.order())
    await clear_outbox(clean_db)
    actor = market.customer if who == "customer" else market.provider
    cancelled = await market.act(order, "cancel", actor, {"reason": "Changed my mind"})
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_reason"] == "Changed my mind"
    assert await outbox_types(clean_db) == [CHANGED, "orders.order_cancelled"]
    (event,) = await outbox_envelopes(clean_db, "orders.order_cancelled")
    assert event["data"]["paid"] is paid
    assert event["data"]["cancelled_by"] == who
    assert event["data"]["reason"] == "Changed my mind"
    last = (await market.history(order))[-1]
    assert (last["to_status"], last["actor_role"], last["note"]) == (
        "cancelled",
        who,
        "Changed my mind",
    )


async def test_strangers_get_404_for_every_action(market: Market, stranger: Actor) -> None:
    order = await market.paid_order()
    for action, body in (
        ("start", None),
        ("deliver", {"message": "x"}),
        ("request-revision", {}),
        ("complete", None),
        ("cancel", {}),
    ):
        answer = await market.post(order, action, stranger, body)
        assert (answer.status_code, answer.json()["error"]) == (404, "order_not_found")
    assert (await upload(market, order, stranger)).status_code == 404


async def test_two_racing_transitions_one_wins(market: Market, clean_db: AsyncEngine) -> None:
    for _ in range(3):
        order = await market.paid_order()
        start, cancel = await asyncio.gather(
            market.post(order, "start", market.provider),
            market.post(order, "cancel", market.customer, {"reason": "race"}),
        )
        codes = sorted((start.status_code, cancel.status_code))
        assert codes == [200, 409], (start.text, cancel.text)
        loser = start if start.status_code == 409 else cancel
        assert loser.json()["error"] == "invalid_transition"
        history = await market.history(order)
        assert len(history) == 3  # placed, paid, and one of the two


def stored_files(files_dir: Path) -> list[Path]:
    return [p for p in files_dir.rglob("*") if p.is_file()] if files_dir.exists() else []


async def test_attachments(market: Market, stranger: Actor, files_dir: Path) -> None:
    order = await market.paid_order()
    await market.act(order, "start", market.provider)
    image = await upload(market, order, market.provider, image_bytes("PNG"))
    assert image.status_code == 201, image.text
    from_customer = await upload(market, order, market.customer)
    assert from_customer.status_code == 201
    not_a_file = await upload(market, order, market.provider, b"#!/bin/sh\necho hi\n")
    assert (not_a_file.status_code, not_a_file.json()["error"]) == (415, "unsupported_file_type")
    assert (await upload(market, order, stranger)).status_code == 404
    assert len(stored_files(files_dir)) == 2  # refused uploads store nothing

    # Only the provider's own, unused files of this order go into a delivery.
    for ids in ([from_customer.json()["id"]], [str(order["id"])]):
        refused = await market.post(
            order, "deliver", market.provider, {"message": "x", "attachment_ids": ids}
        )
        assert (refused.status_code, refused.json()["error"]) == (422, "unknown_attachment")
    ok = await market.post(
        order, "deliver", market.provider, {"message": "x", "attachment_ids": [image.json()["id"]]}
    )
    assert ok.status_code == 200, ok.text
    await market.act(order, "request-revision", market.customer, {})
    reused = await market.post(
        order, "deliver", market.provider, {"message": "y", "attachment_ids": [image.json()["id"]]}
    )
    assert (reused.status_code, reused.json()["error"]) == (422, "unknown_attachment")

    await market.act(order, "deliver", market.provider, {"message": "y"})
    await market.act(order, "complete", market.customer)
    closed = await upload(market, order, market.provider)
    assert (closed.status_code, closed.json()["error"]) == (409, "order_closed")
    assert len(stored_files(files_dir)) == 2


async def test_an_admin_cancels_work_in_progress_and_the_money_goes_back(
    market: Market, clean_db: AsyncEngine, admin: Actor
) -> None:
    order = await market.paid_order()
    await market.act(order, "start", market.provider)
    await clear_outbox(clean_db)
    cancelled = await market.act(order, "cancel", admin, {"reason": "Dispute settled"})
    assert (cancelled["status"], cancelled["paid"]) == ("cancelled", True)
    assert await status_changes(clean_db) == [("in_progress", "cancelled", "admin")]
    (event,) = await outbox_envelopes(clean_db, "orders.order_cancelled")
    assert (event["data"]["paid"], event["data"]["cancelled_by"]) == (True, "admin")
    last = (await market.history(order))[-1]
    assert last["actor_id"] == str(admin.id)
