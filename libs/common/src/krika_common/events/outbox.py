"""Transactional outbox: events are rows written with the state change; a relay publishes them.

Nothing is published before the writing transaction commits (the relay only sees committed
rows) and nothing committed is lost while the broker is down (a row stays pending until the
broker confirmed it). Delivery is at-least-once: consumers deduplicate with the inbox.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
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


async def record_event(
    session: SAAsyncSession,
    data: EventData,
    *,
    producer: str,
    correlation_id: str | None = None,
) -> Envelope:
    """Add the event to the caller's transaction (flush only): it is published after commit."""
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
    await session.flush()
    return envelope


class OutboxPublishFailed(Exception):
    """A batch stopped at a row the broker did not confirm; the rows before it were published."""

    def __init__(self, published: int, error: str) -> None:
        super().__init__(f"published {published} then failed: {error}")
        self.published = published


class OutboxRelay:
    """Publishes committed outbox rows in id order, with publisher confirms, and marks them.

    Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays (replicas) never publish
    the same row twice; a relay stops a batch at the first failure, so it never publishes a row
    ahead of an earlier one it could not publish.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        service: str | None = None,
        batch_size: int = 100,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bus = bus
        self.service = service or bus.service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff

    async def publish_pending(self) -> int:
        """Publish one batch; the number published. Raises `OutboxPublishFailed` on a failure,
        after committing what was published and recording the attempt on the rest."""
        published = 0
        failure: str | None = None
        async with self._sessionmaker() as session, session.begin():
            claim = (
                select(OutboxMessage)
                .where(col(OutboxMessage.published_at).is_(None))
                .order_by(col(OutboxMessage.id))
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = (await session.exec(claim)).all()
            for row in rows:
                headers = dict(row.headers)
                try:
                    with producer_span(f"{row.event_type} publish", headers):
                        await self._bus.publish(Envelope.model_validate(row.envelope), headers)
                except Exception as exc:
                    failure = error_text(exc)
                    break
                row.published_at = utcnow()
                published += 1
            if failure is not None:
                for row in rows[published:]:
                    row.attempts += 1
                    row.last_error = failure
        if published:
            OUTBOX_PUBLISHED.labels(self.service).inc(published)
        if failure is not None:
            OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
            raise OutboxPublishFailed(published, failure)
        return published

    async def refresh_metrics(self) -> int:
        """Update the pending/lag gauges; the number of pending rows."""
        async with self._sessionmaker() as session:
            query = select(func.count(), func.min(OutboxMessage.created_at)).where(
                col(OutboxMessage.published_at).is_(None)
            )
            count, oldest = (await session.exec(query)).one()
        OUTBOX_PENDING.labels(self.service).set(count)
        lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        OUTBOX_OLDEST_PENDING.labels(self.service).set(max(lag, 0.0))
        return int(count)

    def _backoff(self, failures: int) -> float:
        ceiling = min(self.max_backoff, self.poll_interval * 2.0**failures)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def run(self) -> None:
        """Publish until cancelled; on failures back off (with jitter, up to `max_backoff`)."""
        failures = 0
        metrics_due = 0.0
        while True:
            try:
                published = await self.publish_pending()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("outbox relay failed (%s); retrying in %.2fs", error_text(exc), delay)
                published = 0
            else:
                delay = 0.0 if published >= self.batch_size else self.poll_interval
            if time.monotonic() >= metrics_due:
                metrics_due = time.monotonic() + 1.0
                try:
                    await self.refresh_metrics()
                except Exception as exc:
                    log.warning("outbox metrics not refreshed: %s", error_text(exc))
            if delay:
                await asyncio.sleep(delay)
