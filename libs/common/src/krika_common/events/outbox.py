"""Transactional outbox: events are rows written with the state change; a relay publishes them.

Nothing is published before the writing transaction commits (the relay only sees committed
rows) and nothing committed is lost while the broker is down (a row stays pending until the
broker confirmed it). Delivery is at-least-once: consumers deduplicate with the inbox.

One relay publishes at a time (a transaction-scoped advisory lock; other replicas wait their
turn), in id order, with the whole batch's publisher confirms in flight at once; one UPDATE
marks the confirmed prefix. The relay sleeps until a trigger's NOTIFY says rows were committed
(polling only as a fallback). Order: two events of one aggregate are published in the order
their transactions committed when those transactions serialised on the aggregate's row (they
do: use cases lock what they change); a failed publish is retried before anything after it,
but the broker may already hold copies of later rows of that batch (duplicates, not losses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Row,
    Text,
    Uuid,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utc_field, utcnow
from krika_common.events.bus import EventBus, error_text
from krika_common.events.envelope import Envelope, EventData
from krika_common.events.tracing import TRACEPARENT, current_traceparent, producer_span
from krika_common.telemetry import request_id_var

log = logging.getLogger(__name__)

OUTBOX_PENDING = Gauge("krika_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_PENDING = Gauge(
    "krika_outbox_oldest_pending_seconds",
    "Age of the oldest unpublished outbox row (outbox lag)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "krika_outbox_published_total", "Outbox rows published and confirmed", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "krika_outbox_publish_failures_total", "Relay batches stopped by a publish failure", ["service"]
)


class OutboxMessage(SQLModel, table=True):
    """One event waiting for (or done with) publication; `id` orders publication."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=Column(Uuid, nullable=False, unique=True))
    event_type: str = Field(max_length=200)
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # Captured when the event was written: the request's `traceparent` travels with the event.
    headers: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    created_at: datetime = utc_field()
    published_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_type=Text)


# A statement-level trigger NOTIFYs the relay when outbox rows are inserted; PostgreSQL delivers
# it at commit (never for a rolled-back transaction) and folds repeats within one transaction.
# The same two statements belong in each service's migration that creates its outbox
# (identity: 20261127_9e4b7c2d1f60_outbox_notify.py); `create_all` (the lib's tests) runs them here.
NOTIFY_CHANNEL = "krika_outbox"
OUTBOX_NOTIFY_DDL = (
    """CREATE OR REPLACE FUNCTION krika_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('krika_outbox', '');
    RETURN NULL;
END $$""",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION krika_outbox_notify()""",
)
_outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
for _statement in OUTBOX_NOTIFY_DDL:
    event.listen(_outbox, "after_create", DDL(_statement))  # type: ignore[no-untyped-call]

# The relay's advisory lock key (per database: each service's outbox is in its own database).
RELAY_LOCK = 0x6B72696B61  # "krika"
# Fixed statement texts (ids as one array), so each is compiled and prepared once.
_TAKE_TURN = text("SELECT pg_try_advisory_xact_lock(:key)")
_CLAIM = text(
    """SELECT id, event_type, envelope, headers FROM outbox
    WHERE published_at IS NULL ORDER BY id LIMIT :limit"""
).columns(_outbox.c.id, _outbox.c.event_type, _outbox.c.envelope, _outbox.c.headers)
_MARK_PUBLISHED = text(
    "UPDATE outbox SET published_at = :now WHERE id = ANY(CAST(:ids AS bigint[]))"
)
_MARK_FAILED = text(
    """UPDATE outbox SET attempts = attempts + 1, last_error = :error
    WHERE id = ANY(CAST(:ids AS bigint[]))"""
)


async def record_event(
    session: SAAsyncSession,
    data: EventData,
    *,
    producer: str,
    correlation_id: str | None = None,
) -> Envelope:
    """Add the event to the caller's transaction: it is written with the transaction's other
    changes (one INSERT for all its events) and published after commit."""
    envelope = Envelope.wrap(
        data,
        producer=producer,
        correlation_id=correlation_id if correlation_id is not None else request_id_var.get(),
    )
    traceparent = current_traceparent()
    session.add(
        OutboxMessage(
            event_id=envelope.id,
            event_type=envelope.type,
            envelope=envelope.model_dump(mode="json"),
            headers={TRACEPARENT: traceparent} if traceparent else {},
        )
    )
    return envelope


class OutboxPublishFailed(Exception):
    """A batch stopped at a row the broker did not confirm; the rows before it were published."""

    def __init__(self, published: int, error: str) -> None:
        super().__init__(f"published {published} then failed: {error}")
        self.published = published


class OutboxRelay:
    """Publishes committed outbox rows in id order, with publisher confirms, and marks them.

    Limits: `batch_size` rows (and confirms in flight) per round; each publish waits at most
    the bus's `publish_timeout`; without a NOTIFY the relay looks again every `poll_interval`
    seconds; failures back off up to `max_backoff`.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        service: str | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bus = bus
        self.service = service or bus.service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()

    async def publish_pending(self) -> int:
        """Publish one batch; the number published (0 also while another relay holds the turn).

        Raises `OutboxPublishFailed` on a failure, after committing what was published and
        recording the attempt on the rest.
        """
        async with self._sessionmaker() as session, session.begin():
            conn = await session.connection()
            # The turn first, then the rows: the SELECT's snapshot (READ COMMITTED) is taken
            # after the previous holder committed, so it sees what that relay marked.
            if not (await conn.execute(_TAKE_TURN, {"key": RELAY_LOCK})).scalar_one():
                return 0
            rows = (await conn.execute(_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            published, failure = await self._publish(rows)
            ids = [row.id for row in rows]
            if published:
                await conn.execute(_MARK_PUBLISHED, {"ids": ids[:published], "now": utcnow()})
            if failure is not None:
                await conn.execute(_MARK_FAILED, {"ids": ids[published:], "error": failure})
        if published:
            OUTBOX_PUBLISHED.labels(self.service).inc(published)
        if failure is not None:
            OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
            raise OutboxPublishFailed(published, failure)
        return published

    async def _publish(self, rows: Sequence[Row[Any]]) -> tuple[int, str | None]:
        """Publish the rows with all their confirms in flight; (confirmed prefix, first error).

        A row that is not a valid envelope stops the batch before anything after it is sent.
        The publishes reach the channel in row order (tasks start in order and the channel's
        write lock is first come, first served), so the broker receives them in id order.
        """
        envelopes: list[tuple[Envelope, dict[str, Any], str]] = []
        invalid: str | None = None
        for row in rows:
            try:
                envelopes.append(
                    (Envelope.model_validate(row.envelope), dict(row.headers), row.event_type)
                )
            except ValidationError as exc:
                invalid = error_text(exc)
                break

        async def publish(envelope: Envelope, headers: dict[str, Any], event_type: str) -> None:
            with producer_span(f"{event_type} publish", headers):
                await self._bus.publish(envelope, headers)

        results = await asyncio.gather(
            *(publish(*item) for item in envelopes), return_exceptions=True
        )
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: nothing is marked, the rows stay pending
                return index, error_text(result)
        return len(envelopes), invalid

    async def refresh_metrics(self) -> int:
        """Update the pending/lag gauges; the number of pending rows."""
        query = select(func.count(), func.min(_outbox.c.created_at)).where(
            _outbox.c.published_at.is_(None)
        )
        async with self._sessionmaker() as session:
            count, oldest = (await (await session.connection()).execute(query)).one()
        OUTBOX_PENDING.labels(self.service).set(count)
        lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        OUTBOX_OLDEST_PENDING.labels(self.service).set(max(lag, 0.0))
        return int(count)

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.max_backoff, self.poll_interval * 2.0**failures)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def _listen(self) -> None:
        """Hold a LISTEN connection that wakes the relay; reconnect (polling meanwhile)."""
        engine: AsyncEngine = self._sessionmaker.kw["bind"]
        while True:
            try:
                async with engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection  # asyncpg's connection
                    lost = asyncio.Event()
                    driver.add_termination_listener(lambda _conn, lost=lost: lost.set())
                    await driver.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wake.set())
                    self._wake.set()  # rows committed while nobody listened
                    try:
                        await lost.wait()
                    finally:
                        # Not back to the pool with a listener on it.
                        await conn.invalidate()
                log.warning("outbox LISTEN connection lost; polling until it is back")
            except Exception as exc:
                log.warning("outbox LISTEN failed (%s); polling meanwhile", error_text(exc))
            await asyncio.sleep(self.poll_interval)

    async def run(self) -> None:
        """Publish until cancelled: a round whenever rows are committed (NOTIFY) or every
        `poll_interval`; on failures back off (with jitter, up to `max_backoff`)."""
        listener = asyncio.create_task(self._listen())
        try:
            await self._run()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _round(self) -> int:
        """One `publish_pending`, finished even when the relay is cancelled meanwhile (at
        shutdown): what the broker confirmed is then marked, not published again later. The
        wait is bounded by the publishes' timeout."""
        round_ = asyncio.ensure_future(self.publish_pending())
        try:
            return await asyncio.shield(round_)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._bus.publish_timeout + 5.0):
                    await round_
            raise

    async def _run(self) -> None:
        failures = 0
        metrics_due = 0.0
        while True:
            self._wake.clear()
            try:
                published = await self._round()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("outbox relay failed (%s); retrying in %.2fs", error_text(exc), delay)
                published = -1
            if time.monotonic() >= metrics_due:
                metrics_due = time.monotonic() + 1.0
                try:
                    await self.refresh_metrics()
                except Exception as exc:
                    log.warning("outbox metrics not refreshed: %s", error_text(exc))
            if published < 0:
                await asyncio.sleep(delay)  # a NOTIFY does not cut a backoff short
            elif published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()
