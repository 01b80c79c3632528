"""`python -m notify.worker`: publishes notify's outbox (notify.notification_created), consumes
the events it tells people about (notify.consumers, through the inbox, queue `notify.events`),
sends the e-mail delivery queue over SMTP (notify.mailer) and turns due chat digests into
e-mails. It serves /healthz, /readyz and /metrics on NOTIFY_WORKER_PORT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import EventBus
from krika_common.events.bus import error_text
from krika_common.events.sealed import load_key
from krika_common.server import serve
from krika_common.worker import worker_app
from notify import service
from notify.config import Settings
from notify.consumers import inbox_handlers
from notify.errors import RecipientUnknown
from notify.mailer import Mailer, measure_queue, send_due
from notify.models import ChatDigest, KnownOrder
from notify.render import Templates
from notify.service import Notify

log = logging.getLogger(__name__)

# The e-mail shows this many of a digest's messages (and counts the rest).
DIGEST_SHOWN = 5


async def run_mail(sessionmaker: async_sessionmaker[AsyncSession], mailer: Mailer) -> None:
    """Send due deliveries until cancelled: right away while there are more, else every
    poll_interval; the queue's gauges every round."""
    settings = mailer.settings
    while True:
        sent = 0
        try:
            sent = await send_due(sessionmaker, mailer)
            await digests_due(sessionmaker, mailer.notify)
            await measure_queue(sessionmaker)
        except Exception as exc:
            log.warning("mail round failed: %s", error_text(exc))
        if sent < settings.send_batch:
            await asyncio.sleep(settings.poll_interval)


async def digests_due(sessionmaker: async_sessionmaker[AsyncSession], notify: Notify) -> int:
    """Queue the e-mail of every due chat digest (once: the digest is closed with it)."""
    async with sessionmaker() as session, session.begin():
        due = (
            await session.exec(
                select(ChatDigest)
                .where(col(ChatDigest.sent_at).is_(None), col(ChatDigest.send_after) <= func.now())
                .order_by(col(ChatDigest.send_after))
                .limit(100)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for digest in due:
            try:
                target = await service.recipient(session, digest.user_id)
            except RecipientUnknown:
                digest.send_after = utcnow() + timedelta(minutes=1)
                session.add(digest)
                continue
            order = await session.get(KnownOrder, digest.order_id) if digest.order_id else None
            context = notify.base_context(digest.user_id, target.full_name, "chat_message") | {
                "conversation_url": notify.url(f"/messages/{digest.conversation_id}"),
                "count": digest.count,
                "messages": digest.messages[-DIGEST_SHOWN:],
                "order_title": order.title if order else None,
            }
            await service.enqueue_email(
                session,
                f"chat_digest:{digest.id}",
                digest.user_id,
                target.email,
                "chat_message",
                context,
            )
            digest.sent_at = utcnow()
            session.add(digest)
        return len(due)


def create_worker_app(
    settings: Settings | None = None,
    *,
    make_bus: Callable[[str], EventBus] | None = None,
    templates: Templates | None = None,
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    config = settings or Settings()
    notify = Notify(config, templates or Templates())
    mailer = Mailer(notify, load_key(config.link_key_file) if config.link_key_file else None)
    return worker_app(
        config,
        inbox=lambda _redis: inbox_handlers(notify),
        loops=lambda sessionmaker: [run_mail(sessionmaker, mailer)],
        make_bus=make_bus,
    )


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
