"""Sending the delivery queue over SMTP (aiosmtplib), one message per delivery.

A delivery is rendered when it is sent (its template and stored context; a one-time link's
sealed token is opened only here). Outcomes:
- accepted: `sent`, with the Message-ID;
- a temporary failure (a 4xx answer, no connection, a timeout): `pending` again after
  retry_base * 2^(attempts-1) seconds (at most retry_max), `failed` after max_attempts;
- a permanent failure (a 5xx answer, a message that cannot be rendered): `failed` with the
  reason;
- switched off by the recipient since it was queued: `suppressed`.

Deliveries are claimed with FOR UPDATE SKIP LOCKED and a lease (next_attempt_at moves
send_lease ahead), so workers share the queue and a delivery whose worker died is sent by
another. SMTP gives no exactly-once: a worker that dies after the relay accepted a message but
before recording it sends it again when the lease ends.

Nothing secret is logged: no bodies, no links; a recipient is named by the delivery id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any
from urllib.parse import quote

import aiosmtplib
from joserfc.jwk import ECKey
from prometheus_client import Counter, Gauge
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events.bus import error_text
from krika_common.events.sealed import SealBroken, unseal
from notify import service
from notify.models import DeliveryStatus, EmailDelivery, Recipient
from notify.render import Rendered
from notify.service import EMAIL, Notify

log = logging.getLogger(__name__)

SENT = Counter("krika_notify_emails_total", "E-mail delivery outcomes", ["kind", "outcome"])
QUEUED = Gauge("krika_notify_email_queue", "E-mail deliveries by status", ["status"])


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    status: DeliveryStatus
    error: str | None = None
    message_id: str | None = None


class Mailer:
    def __init__(self, notify: Notify, link_key: ECKey | None) -> None:
        self.notify = notify
        self.settings = notify.settings
        self.link_key = link_key

    # --- composing -----------------------------------------------------------------------------

    def render(self, delivery: EmailDelivery, name: str) -> Rendered:
        context = service.revive(dict(delivery.context))
        context["recipient_name"] = name
        sealed = context.pop("sealed_token", None)
        path = context.pop("link_path", None)
        if sealed is not None:
            if self.link_key is None:
                raise PermanentFailure("no link key (NOTIFY_LINK_KEY_FILE) to open the token")
            try:
                token = unseal(sealed, self.link_key)
            except SealBroken as exc:
                raise PermanentFailure("the link's token cannot be opened") from exc
            context["link_url"] = self.notify.url(f"{path}?token={quote(token)}")
        try:
            return self.notify.templates.render(delivery.kind, context)
        except Exception as exc:  # a template or its context is wrong: sending again won't help
            raise PermanentFailure(f"cannot render {delivery.kind}: {type(exc).__name__}") from exc

    def compose(self, delivery: EmailDelivery, name: str) -> EmailMessage:
        rendered = self.render(delivery, name)
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = formataddr((name, delivery.to_address))
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = make_msgid(
            idstring=delivery.id.hex, domain=self.settings.mail_domain
        )
        message["X-Krika-Kind"] = delivery.kind
        unsubscribe = delivery.context.get("unsubscribe_url")
        if unsubscribe:  # RFC 8058 one-click; RFC 2369 for the rest
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    # --- sending ------------------------------------------------------------------------------

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,  # an empty one: no login
                password=s.smtp_password or None,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                validate_certs=s.smtp_validate_certs,
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            detail = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
            if any(code >= 500 for code in codes):
                raise PermanentFailure(f"recipient refused: {detail}") from exc
            raise TemporaryFailure(f"recipient deferred: {detail}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"{exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentFailure(text) from exc
            raise TemporaryFailure(text) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc

    async def deliver(self, session: AsyncSession, delivery: EmailDelivery) -> Outcome:
        """Send one claimed delivery; the outcome (not yet recorded)."""
        if not await service.enabled(session, delivery.user_id, EMAIL, delivery.kind):
            return Outcome(DeliveryStatus.suppressed, "switched off by the recipient")
        found = await session.get(Recipient, delivery.user_id)
        name = found.full_name if found else str(delivery.context.get("recipient_name", ""))
        try:
            message = self.compose(delivery, name)
            await self.send(message)
        except PermanentFailure as exc:
            return Outcome(DeliveryStatus.failed, str(exc)[:1000])
        except TemporaryFailure as exc:
            if delivery.attempts >= self.settings.max_attempts:
                return Outcome(DeliveryStatus.failed, f"gave up: {exc}"[:1000])
            return Outcome(DeliveryStatus.pending, str(exc)[:1000])
        return Outcome(DeliveryStatus.sent, message_id=str(message["Message-ID"]))

    def backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(seconds=min(s.retry_max, s.retry_base * 2 ** max(0, attempts - 1)))


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Any, limit: int
) -> list[uuid.UUID]:
    """Claim due deliveries: their lease starts now (attempts counted)."""
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.exec(
                select(EmailDelivery.id)
                .where(
                    EmailDelivery.status == DeliveryStatus.pending,
                    col(EmailDelivery.next_attempt_at) <= func.now(),
                )
                .order_by(col(EmailDelivery.next_attempt_at))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if rows:
            await session.exec(
                update(EmailDelivery)
                .where(col(EmailDelivery.id).in_(rows))
                .values(
                    attempts=col(EmailDelivery.attempts) + 1,
                    next_attempt_at=utcnow() + timedelta(seconds=settings.send_lease),
                )
            )
        return list(rows)


async def send_one(
    sessionmaker: async_sessionmaker[AsyncSession], mailer: Mailer, delivery_id: uuid.UUID
) -> None:
    async with sessionmaker() as session:
        delivery = await session.get(EmailDelivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.pending:
            return
        outcome = await mailer.deliver(session, delivery)
        values: dict[str, Any] = {"status": outcome.status, "last_error": outcome.error}
        if outcome.status == DeliveryStatus.sent:
            values |= {"sent_at": utcnow(), "message_id": outcome.message_id}
        elif outcome.status == DeliveryStatus.pending:
            values["next_attempt_at"] = utcnow() + mailer.backoff(delivery.attempts)
        await session.exec(
            update(EmailDelivery).where(col(EmailDelivery.id) == delivery_id).values(**values)
        )
        await session.commit()
    SENT.labels(delivery.kind, "retry" if outcome.status == "pending" else outcome.status).inc()
    if outcome.status == DeliveryStatus.sent:
        log.info("e-mail %s (%s) sent", delivery_id, delivery.kind)
    else:
        log.warning(
            "e-mail %s (%s): %s, attempt %d: %s",
            delivery_id,
            delivery.kind,
            outcome.status,
            delivery.attempts,
            outcome.error,
        )


async def send_due(sessionmaker: async_sessionmaker[AsyncSession], mailer: Mailer) -> int:
    """One round: claim due deliveries and send them, a few at a time; how many."""
    settings = mailer.settings
    claimed = await claim(sessionmaker, settings, settings.send_batch)
    if not claimed:
        return 0
    turns = asyncio.Semaphore(settings.send_concurrency)

    async def one(delivery_id: uuid.UUID) -> None:
        async with turns:
            try:
                await send_one(sessionmaker, mailer, delivery_id)
            except Exception as exc:  # recorded nothing: the lease ends and it is tried again
                log.warning("e-mail %s not sent: %s", delivery_id, error_text(exc))

    await asyncio.gather(*(one(d) for d in claimed))
    return len(claimed)


async def measure_queue(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        rows = (
            await session.exec(
                select(EmailDelivery.status, func.count()).group_by(col(EmailDelivery.status))
            )
        ).all()
    counts = dict(rows)
    for status in DeliveryStatus:
        QUEUED.labels(status.value).set(counts.get(status.value, 0))
