"""The API: your notifications (nobody else's), unread counts and reads, preferences that stop
exactly what they say, the one-click unsubscribe link (no login, once per kind), and the
delivery queue for admins."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.testing.smtp import CaptureServer
from notify.models import EmailDelivery

from .conftest import Deliver
from .factories import Market, Person, verification


def auth(mint_token: Callable[..., str], who: Person, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(who.id, roles or who.roles)}"}


async def test_notifications_are_the_callers_own(
    client: httpx.AsyncClient, deliver: Deliver, mint_token: Callable[..., str]
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    await deliver(market.paid())
    customer = auth(mint_token, market.customer)
    provider = auth(mint_token, market.provider)

    mine = (await client.get("/notifications", headers=customer)).json()["items"]
    assert [n["kind"] for n in mine] == ["order_paid", "welcome"]  # newest first
    assert set(mine[0]) == {"id", "kind", "title", "body", "data", "read_at", "created_at"}
    assert mine[0]["data"] == {"order_id": str(market.order_id)}
    theirs = (await client.get("/notifications", headers=provider)).json()["items"]
    assert {n["id"] for n in theirs}.isdisjoint({n["id"] for n in mine})
    assert (await client.get("/notifications/unread-count", headers=customer)).json() == {
        "count": 2
    }

    # Someone else's: as if it did not exist, and left unread.
    r = await client.post(f"/notifications/{theirs[0]['id']}/read", headers=customer)
    assert (r.status_code, r.json()["error"]) == (404, "notification_not_found")
    r = await client.post(f"/notifications/{uuid.uuid4()}/read", headers=customer)
    assert r.status_code == 404
    r = await client.post(f"/notifications/{mine[0]['id']}/read", headers=customer)
    assert r.status_code == 200
    first_read = r.json()["read_at"]
    assert first_read is not None
    again = await client.post(f"/notifications/{mine[0]['id']}/read", headers=customer)
    assert again.json()["read_at"] == first_read
    unread = (await client.get("/notifications?unread_only=true", headers=customer)).json()
    assert [n["kind"] for n in unread["items"]] == ["welcome"]

    r = await client.post("/notifications/read-all", headers=customer)
    assert r.json() == {"updated": 1}
    assert (await client.get("/notifications/unread-count", headers=provider)).json()[
        "count"
    ] == 3  # the provider's (welcome, order placed, paid) are untouched
    assert (await client.get("/notifications", headers={})).status_code == 401
    r = await client.get("/notifications", params={"cursor": "garbage"}, headers=customer)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")


async def test_pages_do_not_skip_or_repeat(
    client: httpx.AsyncClient, deliver: Deliver, mint_token: Callable[..., str]
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    for _ in range(4):
        await deliver(market.payout(ok=True))
    provider = auth(mint_token, market.provider)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/notifications", params=params, headers=provider)).json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6  # welcome, order placed, 4 payouts


async def test_preferences_stop_exactly_what_they_say(
    client: httpx.AsyncClient,
    deliver: Deliver,
    smtp: CaptureServer,
    mint_token: Callable[..., str],
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    customer = auth(mint_token, market.customer)
    defaults = (await client.get("/notifications/preferences", headers=customer)).json()
    assert defaults["email"]["order_paid"] is True
    assert defaults["in_app"]["order_paid"] is True
    assert defaults["email"]["email_verification"] is True
    assert "email_verification" not in defaults["in_app"]
    assert defaults["locked"] == ["email_verification", "password_reset"]

    r = await client.put(
        "/notifications/preferences",
        json={"email": {"order_paid": False}, "in_app": {"order_cancelled": False}},
        headers=customer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["email"]["order_paid"] is False
    assert r.json()["in_app"]["order_paid"] is True  # only what was named changed
    for body, status, code in [
        ({"email": {"password_reset": False}}, 422, "preference_locked"),
        ({"email": {"no_such_kind": False}}, 422, "unknown_kind"),
        ({"in_app": {"email_verification": True}}, 422, "unknown_kind"),
        ({"sms": {}}, 422, "validation_error"),
        ({"email": {"order_paid": "maybe"}}, 422, "validation_error"),
    ]:
        r = await client.put("/notifications/preferences", json=body, headers=customer)
        assert (r.status_code, r.json()["error"]) == (status, code), body

    smtp.reset()
    await deliver(market.paid(), market.cancelled(paid=True))
    kinds_to_customer = sorted(
        str(m.message["X-Krika-Kind"]) for m in smtp.to(market.customer.email)
    )
    assert kinds_to_customer == ["order_cancelled"]  # order_paid e-mail is off
    kinds_to_provider = sorted(
        str(m.message["X-Krika-Kind"]) for m in smtp.to(market.provider.email)
    )
    assert kinds_to_provider == ["order_cancelled", "order_paid"]  # the provider's are on
    mine = (await client.get("/notifications", headers=customer)).json()["items"]
    assert "order_paid" in {n["kind"] for n in mine}  # in-app order_paid is on
    assert "order_cancelled" not in {n["kind"] for n in mine}  # in-app order_cancelled is off


async def test_one_click_unsubscribe(
    client: httpx.AsyncClient,
    deliver: Deliver,
    smtp: CaptureServer,
    mint_token: Callable[..., str],
    link_key: tuple[object, object],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    [placed_mail] = [
        m for m in smtp.to(market.provider.email) if m.message["X-Krika-Kind"] == "order_placed"
    ]
    link = placed_mail.message["List-Unsubscribe"].strip("<>")
    assert link in placed_mail.text  # the footer's link is the same one
    url = urlsplit(link)
    target = f"{url.path.removeprefix('/api/v1')}?{url.query}"

    page = await client.get(target)  # a link scanner or a person: changes nothing
    assert page.status_code == 200
    assert "<form" in page.text
    # The mail client's one-click POST (RFC 8058), no login.
    r = await client.post(target, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert "no longer" in r.text
    again = await client.post(target, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert "already" in again.text
    prefs = (
        await client.get("/notifications/preferences", headers=auth(mint_token, market.provider))
    ).json()
    assert prefs["email"]["order_placed"] is False
    assert prefs["email"]["order_paid"] is True  # only that kind

    smtp.reset()
    second = Market(provider=market.provider)
    await deliver(second.customer.registered(), second.placed(), second.paid())
    to_provider = [str(m.message["X-Krika-Kind"]) for m in smtp.to(market.provider.email)]
    assert to_provider == ["order_paid"]  # no more order_placed e-mails
    # Security mail still goes out.
    key = link_key[0]
    await deliver(verification(market.provider, "tok_security", key))  # type: ignore[arg-type]
    assert "email_verification" in [
        str(m.message["X-Krika-Kind"]) for m in smtp.to(market.provider.email)
    ]

    for bad in (target[:-3] + "abc", "/notifications/unsubscribe?token=not-a-valid-token"):
        r = await client.post(bad)
        assert (r.status_code, r.json()["error"]) == (400, "unsubscribe_link_invalid"), bad
    async with sessionmaker() as session:
        assert (await session.exec(select(EmailDelivery))).all()


async def test_the_delivery_queue_is_for_admins(
    client: httpx.AsyncClient, deliver: Deliver, mint_token: Callable[..., str]
) -> None:
    market = Market()
    await deliver(market.customer.registered())
    r = await client.get("/notifications/deliveries", headers=auth(mint_token, market.customer))
    assert r.status_code == 403
    admin = auth(mint_token, market.customer, "admin")
    r = await client.get("/notifications/deliveries", params={"status": "sent"}, headers=admin)
    assert r.status_code == 200
    [row] = r.json()["items"]
    assert (row["kind"], row["status"], row["attempts"]) == ("welcome", "sent", 1)
    assert row["to_address"] == market.customer.email
    r = await client.get("/notifications/deliveries", params={"status": "nope"}, headers=admin)
    assert r.status_code == 422
