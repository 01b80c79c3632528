"""Inbox: a consumer records each event id in the same transaction as its effects.

A service declares what it handles once, in an `InboxHandlers` registry (event → named
handlers), and wires it to its bus with `handlers.subscribe(bus, sessionmaker)`:

    handlers = InboxHandlers()

    @handlers.on(OrderPaid, consumer="payments.hold_escrow")
    async def hold_escrow(session: AsyncSession, envelope: Envelope) -> None: ...

Deliveries are handled in batches (whatever has arrived, up to `max_batch`): one transaction
claims the batch's inbox rows with one INSERT, runs the handlers of the newly claimed ones in
delivery order, and commits; the bus acknowledges after the commit. A redelivered event finds
its row already there and is skipped (and acknowledged). If anything in a batch raises, the
batch rolls back and each delivery is handled again in its own transaction, so only the
failing event is retried (its effects and inbox rows roll back together) and the rest commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utc_field
from krika_common.events.bus import Delivery, EventBus, error_text
from krika_common.events.envelope import Envelope, EventData
from krika_common.events.tracing import consumer_context

log = logging.getLogger(__name__)


class InboxMessage(SQLModel, table=True):
    """An event a consumer has handled (its effects committed with this row)."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=200)
    received_at: datetime = utc_field(index=True)


TransactionalHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]

# One statement for a whole batch, the same text whatever its size (compiled and prepared
# once): the rows that were not there yet come back.
_CLAIM = text(
    """INSERT INTO inbox (consumer, event_id, event_type, received_at)
    SELECT consumer, event_id, event_type, now()
    FROM unnest(CAST(:consumers AS text[]), CAST(:event_ids AS uuid[]),
                CAST(:event_types AS text[])) AS claim(consumer, event_id, event_type)
    ON CONFLICT DO NOTHING
    RETURNING consumer, event_id"""
)


class InboxHandlers:
    """A service's event handlers: event type → (consumer name, handler), run once per event.

    The consumer name (e.g. "notify.welcome_email") is the handler's key in the inbox: two
    handlers of one event need two names. Handlers of one event run in registration order, in
    the transaction that records them.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[str, TransactionalHandler]]] = {}

    def add(self, event_type: str, consumer: str, handler: TransactionalHandler) -> None:
        handlers = self._handlers.setdefault(event_type, [])
        if any(name == consumer for name, _ in handlers):
            raise ValueError(f"{consumer} already handles {event_type}")
        handlers.append((consumer, handler))

    def on(
        self, event: type[EventData], *, consumer: str
    ) -> Callable[[TransactionalHandler], TransactionalHandler]:
        """Decorator: `handler(session, envelope)` handles `event` as `consumer`."""

        def register(handler: TransactionalHandler) -> TransactionalHandler:
            self.add(event.event_type, consumer, handler)
            return handler

        return register

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    def subscribe(
        self,
        bus: EventBus,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 100,
    ) -> None:
        """Consume every registered event type on `bus` through the inbox (before `start()`)."""

        async def handle_batch(deliveries: Sequence[Delivery]) -> list[Exception | None]:
            return await self.handle_batch(sessionmaker, deliveries)

        bus.subscribe_batch(self.event_types, handle_batch, max_batch=max_batch)

    async def handle_batch(
        self, sessionmaker: async_sessionmaker[AsyncSession], deliveries: Sequence[Delivery]
    ) -> list[Exception | None]:
        """Handle the deliveries in one transaction, else one transaction each; per delivery,
        None when it is done or the exception that failed it."""
        try:
            async with sessionmaker() as session, session.begin():
                await self._handle(session, deliveries)
            return [None] * len(deliveries)
        except Exception as exc:
            if len(deliveries) == 1:
                return [exc]
            log.info("batch of %d failed (%s); one by one", len(deliveries), error_text(exc))
        outcomes: list[Exception | None] = []
        for delivery in deliveries:
            try:
                async with sessionmaker() as session, session.begin():
                    await self._handle(session, [delivery])
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _handle(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
        claims = [
            (consumer, d.envelope.id, d.envelope.type)
            for d in deliveries
            for consumer, _ in self._handlers.get(d.envelope.type, ())
        ]
        if not claims:
            return
        consumers, event_ids, event_types = zip(*claims, strict=True)
        conn = await session.connection()
        rows = await conn.execute(
            _CLAIM, {"consumers": consumers, "event_ids": event_ids, "event_types": event_types}
        )
        fresh = {(row.consumer, row.event_id) for row in rows}
        for delivery in deliveries:
            envelope = delivery.envelope
            for consumer, handler in self._handlers.get(envelope.type, ()):
                key = (consumer, envelope.id)
                if key not in fresh:
                    log.debug("%s already handled %s %s", consumer, envelope.type, envelope.id)
                    continue
                fresh.discard(key)  # the same event twice in one batch runs once
                with consumer_context(
                    f"{envelope.type} process", delivery.headers, envelope.correlation_id
                ):
                    await handler(session, envelope)
