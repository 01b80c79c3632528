"""Each event that matters becomes the right e-mail (recipient, subject, a working link, a text
and an HTML part) and in-app notification, once - through the inbox handlers as the worker runs
them, and an SMTP peer that is a real server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import Envelope, EventData
from krika_common.testing.smtp import CaptureServer
from notify.models import EmailDelivery, Notification

from .conftest import Deliver
from .factories import (
    Market,
    Person,
    kyc_approved,
    kyc_rejected,
    kyc_submitted,
    password_reset,
    verification,
)

APP = "https://app.krika.test"


async def notifications_of(
    sessionmaker: async_sessionmaker[AsyncSession], who: Person
) -> list[Notification]:
    async with sessionmaker() as session:
        rows = await session.exec(
            select(Notification)
            .where(Notification.user_id == who.id)
            .order_by(col(Notification.created_at))
        )
        return list(rows.all())


def links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", text)


# (the events after both parties registered, then [(kind, recipient, a link in the mail)]).
Case = tuple[Callable[[Market], list[EventData]], list[tuple[str, str, str]]]
CASES: dict[str, Case] = {
    "kyc_submitted": (lambda m: [kyc_submitted(m.provider)], [("kyc_submitted", "provider", "")]),
    "kyc_approved": (lambda m: [kyc_approved(m.provider)], [("kyc_approved", "provider", "")]),
    "kyc_rejected": (
        lambda m: [kyc_rejected(m.provider, "The selfie is blurred")],
        [("kyc_rejected", "provider", "")],
    ),
    "order_placed": (lambda m: [m.placed()], [("order_placed", "provider", "/orders/")]),
    "order_paid": (
        lambda m: [m.placed(), m.paid()],
        [("order_paid", "customer", "/orders/"), ("order_paid", "provider", "/orders/")],
    ),
    "order_delivered": (
        lambda m: [m.placed(), m.status("in_progress", "delivered", "provider")],
        [("order_delivered", "customer", "/orders/")],
    ),
    "revision_requested": (
        lambda m: [m.placed(), m.status("delivered", "in_progress", "customer", "Bigger font")],
        [("revision_requested", "provider", "/orders/")],
    ),
    "order_completed": (
        lambda m: [m.placed(), m.status("delivered", "completed", "customer")],
        [("order_completed", "customer", "/orders/"), ("order_completed", "provider", "/orders/")],
    ),
    "order_cancelled": (
        lambda m: [m.placed(), m.cancelled(paid=True)],
        [("order_cancelled", "customer", "/orders/"), ("order_cancelled", "provider", "/orders/")],
    ),
    "refund_processed": (
        lambda m: [m.placed(), m.refunded()],
        [("refund_processed", "customer", "/orders/")],
    ),
    "provider_credited": (
        lambda m: [m.placed(), m.credited()],
        [("provider_credited", "provider", "/wallet")],
    ),
    "payout_succeeded": (
        lambda m: [m.payout(ok=True)],
        [("payout_succeeded", "provider", "/wallet")],
    ),
    "payout_failed": (lambda m: [m.payout(ok=False)], [("payout_failed", "provider", "/wallet")]),
    "review_posted": (
        lambda m: [m.placed(), m.reviewed()],
        [("review_posted", "provider", "/services/")],
    ),
}
# Kinds an event sends besides the one under test (the order placement's own mail).
BY_THE_WAY = {"order_placed"}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_event_sends_its_mail_and_notification(
    case: str,
    deliver: Deliver,
    smtp: CaptureServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered())
    smtp.reset()
    make, expected = CASES[case]
    await deliver(*make(market))

    people = {"customer": market.customer, "provider": market.provider}
    for kind, role, link in expected:
        who = people[role]
        mails = [m for m in smtp.to(who.email) if m.message["X-Krika-Kind"] == kind]
        assert len(mails) == 1, (kind, role, [m.subject for m in smtp.to(who.email)])
        mail = mails[0]
        assert mail.subject.strip()
        assert "\n" not in mail.subject
        text, html = mail.text, mail.html
        assert "<html" in html.lower()
        assert "<" not in text.replace("<https", "")  # no markup in the text part
        assert who.full_name in text
        found = [u for u in links(text) if u.startswith(APP + link)] if link else links(text)
        assert found, (kind, links(text))
        assert any(f'href="{u}"' in html.replace("&amp;", "&") for u in found)
        if kind == "order_placed" or "order" in kind:
            assert market.title in text
        # Every one of these can be switched off: a one-click unsubscribe (RFC 8058).
        assert mail.message["List-Unsubscribe"].startswith(
            "<https://api.krika.test/api/v1/notifications/unsubscribe?token="
        )
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        notes = [n for n in await notifications_of(sessionmaker, who) if n.kind == kind]
        assert len(notes) == 1, (kind, role)
        assert notes[0].title
        assert notes[0].body
    # Nothing else was sent to anyone.
    sent = sorted((m.message["X-Krika-Kind"], m.recipients[0]) for m in smtp.messages)
    wanted = sorted((k, people[r].email) for k, r, _ in expected)
    extra = [s for s in sent if s not in wanted and s[0] not in BY_THE_WAY - {case}]
    assert extra == []


async def test_welcome_mail_and_notification(
    deliver: Deliver, smtp: CaptureServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    market = Market()
    await deliver(market.provider.registered())
    [mail] = smtp.to(market.provider.email)
    assert mail.message["X-Krika-Kind"] == "welcome"
    assert mail.message["To"].addresses[0].addr_spec == market.provider.email
    assert market.provider.full_name in mail.text
    [note] = await notifications_of(sessionmaker, market.provider)
    assert note.kind == "welcome"


@pytest.mark.parametrize("kind", ["email_verification", "password_reset"])
async def test_security_mail_carries_a_link_with_identitys_token(
    kind: str,
    deliver: Deliver,
    smtp: CaptureServer,
    link_key: tuple[ECKey, Path],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    someone = Market().customer
    token = "tok_" + uuid.uuid4().hex
    make = verification if kind == "email_verification" else password_reset
    await deliver(make(someone, token, link_key[0]))
    [mail] = smtp.to(someone.email)
    path = "/verify-email" if kind == "email_verification" else "/reset-password"
    link = f"{APP}{path}?token={token}"
    assert link in mail.text
    assert f'href="{link}"' in mail.html
    # Security mail: no unsubscribe, no in-app copy; the queue never held the token in clear.
    assert mail.message["List-Unsubscribe"] is None
    assert await notifications_of(sessionmaker, someone) == []
    async with sessionmaker() as session:
        [delivery] = (await session.exec(select(EmailDelivery))).all()
    assert token not in str(delivery.context)
    assert delivery.status == "sent"


async def test_a_duplicated_event_sends_nothing_twice(
    deliver: Deliver, smtp: CaptureServer, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    smtp.reset()
    paid = Envelope.wrap(market.paid(), producer="payments")
    await deliver(paid)
    await deliver(paid)  # redelivered by the broker
    await deliver(paid, paid)  # twice in one batch
    assert len([m for m in smtp.messages if m.message["X-Krika-Kind"] == "order_paid"]) == 2
    async with sessionmaker() as session:
        deliveries = (
            await session.exec(select(EmailDelivery).where(EmailDelivery.kind == "order_paid"))
        ).all()
        notes = (
            await session.exec(select(Notification).where(Notification.kind == "order_paid"))
        ).all()
    assert len(deliveries) == 2
    assert len(notes) == 2


async def test_an_event_before_its_order_or_user_is_retried_not_lost(
    deliver: Deliver, smtp: CaptureServer
) -> None:
    market = Market()
    paid = Envelope.wrap(market.paid(), producer="payments")
    with pytest.raises(Exception, match="not known yet"):
        await deliver(paid)
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    await deliver(paid)  # the bus's retry
    assert {
        m.recipients[0] for m in smtp.messages if m.message["X-Krika-Kind"] == "order_paid"
    } == {
        market.customer.email,
        market.provider.email,
    }


async def test_unknown_status_changes_tell_nobody(deliver: Deliver, smtp: CaptureServer) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    smtp.reset()
    await deliver(market.status("paid", "in_progress", "provider"))
    assert smtp.messages == []


def _kinds(messages: list[Any]) -> list[str]:
    return [str(m.message["X-Krika-Kind"]) for m in messages]
