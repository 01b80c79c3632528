"""Chat messages to a recipient who was offline: e-mailed as a digest, at most one e-mail per
conversation every NOTIFY_CHAT_DIGEST_MINUTES; nothing for a recipient who was online, or who
switched these e-mails off."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.testing.smtp import CaptureServer
from notify.mailer import Mailer
from notify.models import ChatDigest
from notify.service import Notify
from notify.worker import digests_due

from .conftest import Deliver, send_all
from .factories import Market


async def flush(
    sessionmaker: async_sessionmaker[AsyncSession], notify: Notify, mailer: Mailer
) -> None:
    await digests_due(sessionmaker, notify)
    await send_all(sessionmaker, mailer)


async def test_offline_recipients_get_one_digest_per_window(
    deliver: Deliver,
    smtp: CaptureServer,
    notify: Notify,
    mailer: Mailer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    smtp.reset()
    await deliver(market.message("Hello! Any news on the logo?"))
    await flush(sessionmaker, notify, mailer)
    [first] = smtp.to(market.provider.email)
    assert first.message["X-Krika-Kind"] == "chat_message"
    assert "Any news on the logo?" in first.text
    assert market.customer.full_name in first.text
    assert "/messages/" in first.text

    # Within the window: collected, not sent.
    await deliver(market.message("Second"), market.message("Third"))
    await deliver(market.message("Online now", offline=False))  # the provider was online
    await flush(sessionmaker, notify, mailer)
    assert len(smtp.to(market.provider.email)) == 1

    # The window passes: one e-mail with both waiting messages.
    async with sessionmaker() as session:
        await session.exec(
            update(ChatDigest)
            .where(col(ChatDigest.sent_at).is_(None))
            .values(send_after=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await flush(sessionmaker, notify, mailer)
    mails = smtp.to(market.provider.email)
    assert len(mails) == 2
    assert "Second" in mails[1].text
    assert "Third" in mails[1].text
    assert "Online now" not in mails[1].text
    assert smtp.to(market.customer.email) == []  # the sender is told nothing


async def test_digests_can_be_switched_off(
    deliver: Deliver,
    smtp: CaptureServer,
    notify: Notify,
    mailer: Mailer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    market = Market()
    await deliver(market.customer.registered(), market.provider.registered(), market.placed())
    from notify import service

    async with sessionmaker() as session:
        token = notify.unsubscribe_token(market.provider.id, "chat_message")
        await service.unsubscribe(notify, session, token)
        await session.commit()
    smtp.reset()
    await deliver(market.message("Hello?"))
    await flush(sessionmaker, notify, mailer)
    assert smtp.messages == []
