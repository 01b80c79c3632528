"""The delivery queue against a real SMTP peer: a temporary failure (421, no connection) is
retried with backoff and then delivered; a permanent one (550) is recorded with its reason; a
kind switched off after it was queued is not sent; nothing secret reaches the logs."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.server import free_port
from krika_common.testing.smtp import CaptureServer
from notify.config import Settings
from notify.mailer import Mailer, send_due
from notify.models import EmailDelivery
from notify.service import Notify

from .conftest import Deliver, send_all
from .factories import Market, verification


async def deliveries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[EmailDelivery]:
    async with sessionmaker() as session:
        return list((await session.exec(select(EmailDelivery))).all())


async def due_now(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Skip the backoff wait."""
    async with sessionmaker() as session:
        await session.exec(
            update(EmailDelivery)
            .where(col(EmailDelivery.status) == "pending")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


async def test_a_temporary_failure_is_retried_then_delivered(
    deliver: Deliver,
    smtp: CaptureServer,
    mailer: Mailer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    someone = Market().customer
    smtp.answers.append("421 4.3.2 Service not available, try again later")
    await deliver(someone.registered())
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("421")
    assert delivery.next_attempt_at > utcnow()  # backoff
    assert smtp.messages == []
    assert await send_due(sessionmaker, mailer) == 0  # not due yet

    await due_now(sessionmaker)
    await send_all(sessionmaker, mailer)
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert delivery.message_id is not None
    [mail] = smtp.to(someone.email)
    assert mail.message["Message-ID"] == delivery.message_id


async def test_a_permanent_failure_is_recorded(
    deliver: Deliver,
    smtp: CaptureServer,
    mailer: Mailer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    someone = Market().customer
    smtp.answers.append("550 5.1.1 No such user here")
    await deliver(someone.registered())
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == "550 5.1.1 No such user here"
    await due_now(sessionmaker)
    await send_all(sessionmaker, mailer)
    assert smtp.messages == []  # never tried again


async def test_no_connection_is_temporary_and_attempts_run_out(
    settings: Settings,
    notify: Notify,
    link_key: tuple[ECKey, Path],
    deliver: Deliver,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    nowhere = Mailer(
        Notify(
            settings.model_copy(update={"smtp_port": free_port(), "max_attempts": 2}),
            notify.templates,
        ),
        link_key[0],
    )
    await deliver(Market().customer.registered(), send=False)
    await send_all(sessionmaker, nowhere)
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    await due_now(sessionmaker)
    await send_all(sessionmaker, nowhere)
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("gave up")


async def test_a_kind_switched_off_after_queueing_is_not_sent(
    deliver: Deliver,
    smtp: CaptureServer,
    mailer: Mailer,
    notify: Notify,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    someone = Market().customer
    await deliver(someone.registered(), send=False)
    from notify import service

    async with sessionmaker() as session:
        await service.unsubscribe(notify, session, notify.unsubscribe_token(someone.id, "welcome"))
        await session.commit()
    await send_all(sessionmaker, mailer)
    [delivery] = await deliveries(sessionmaker)
    assert delivery.status == "suppressed"
    assert smtp.messages == []


async def test_no_token_or_link_in_the_logs(
    deliver: Deliver,
    smtp: CaptureServer,
    link_key: tuple[ECKey, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    someone = Market().customer
    token = "secret_" + uuid.uuid4().hex
    smtp.answers.append("421 try later")  # the failure path logs too
    with caplog.at_level(logging.DEBUG):
        await deliver(verification(someone, token, link_key[0]))
    assert caplog.records  # something was logged
    # Our process's records: not those of the test's own SMTP peer (aiosmtpd, `mail.log`).
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    logged = "\n".join(r.getMessage() for r in ours)
    assert token not in logged
    assert "verify-email?token" not in logged
    assert someone.email not in logged
