"""Inbox: a consumer records each event id in the same transaction as its effects.

A redelivered event finds its id already there and is skipped (and acknowledged); a handler
that raises rolls back its effects and the inbox row together, so the retry runs it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utc_field
from krika_common.events.bus import EventHandler
from krika_common.events.envelope import Envelope

log = logging.getLogger(__name__)


class InboxMessage(SQLModel, table=True):
    """An event a consumer has handled (its effects committed with this row)."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=200)
    received_at: datetime = utc_field(index=True)


TransactionalHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]


def inbox_handler(
    sessionmaker: async_sessionmaker[AsyncSession], consumer: str, handler: TransactionalHandler
) -> EventHandler:
    """An `EventBus` handler running `handler(session, envelope)` at most once per event id.

    `consumer` names this handler in the inbox (e.g. "notify.welcome_email"): two handlers of
    the same event need two names. The transaction commits before the bus acknowledges.
    """

    async def handle(envelope: Envelope) -> None:
        async with sessionmaker() as session, session.begin():
            claim = (
                insert(InboxMessage)
                .values(consumer=consumer, event_id=envelope.id, event_type=envelope.type)
                .on_conflict_do_nothing()
                .returning(InboxMessage.__table__.c.event_id)  # type: ignore[attr-defined]
            )
            if (await session.exec(claim)).scalar_one_or_none() is None:
                log.debug("%s already handled %s %s", consumer, envelope.type, envelope.id)
                return
            await handler(session, envelope)

    handle.__qualname__ = f"inbox_handler[{consumer}]"
    return handle
