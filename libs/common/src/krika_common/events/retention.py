"""Retention of the outbox, the inbox and idempotency keys: nothing is kept forever.

A published outbox row has done its job (`outbox_retention_days` keeps recent ones for
inspection); an unpublished one is never deleted. An inbox row only has to outlive every
redelivery of its event (retries take minutes; `inbox_retention_days` covers a DLQ replayed
weeks later). An idempotency key is kept `KEY_TTL` (krika_common.idempotency), for services
that have the table (`run_retention(..., idempotency_keys=True)`). Rows go in batches, so no
statement holds many locks or runs long.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events.bus import error_text

log = logging.getLogger(__name__)

PRUNED = Counter(
    "krika_events_pruned_total",
    "Outbox/inbox/idempotency_keys rows deleted by retention",
    ["table"],
)

_PRUNE_OUTBOX = text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < :cutoff "
    "ORDER BY id LIMIT :batch)"
)
_PRUNE_INBOX = text(
    "DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox WHERE received_at < :cutoff "
    "LIMIT :batch)"
)


async def prune_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    outbox_retention: timedelta,
    inbox_retention: timedelta,
    batch: int = 1000,
) -> dict[str, int]:
    """Delete published outbox rows and inbox rows older than their retention; counts."""
    now = utcnow()
    deleted: dict[str, int] = {}
    for table, statement, retention in (
        ("outbox", _PRUNE_OUTBOX, outbox_retention),
        ("inbox", _PRUNE_INBOX, inbox_retention),
    ):
        total = 0
        while True:
            async with sessionmaker() as session, session.begin():
                result = await session.exec(  # type: ignore[call-overload]
                    statement, params={"cutoff": now - retention, "batch": batch}
                )
                count = int(result.rowcount or 0)
            total += count
            if count < batch:
                break
        deleted[table] = total
        PRUNED.labels(table).inc(total)
    return deleted


async def run_retention(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    outbox_days: float,
    inbox_days: float,
    interval: float = 3600.0,
    idempotency_keys: bool = False,
) -> None:
    """Prune now and every `interval` seconds until cancelled (a worker's background task).

    `idempotency_keys`: also delete expired keys (the service's migration created
    `idempotency_keys`; off by default, so services without the table are unaffected).
    """
    while True:
        try:
            deleted = await prune_events(
                sessionmaker,
                outbox_retention=timedelta(days=outbox_days),
                inbox_retention=timedelta(days=inbox_days),
            )
            if idempotency_keys:
                # Imported here: importing the module registers its table in SQLModel.metadata,
                # which services without the table must not see (Alembic autogenerate).
                from krika_common.idempotency import KEY_TTL, prune_idempotency_keys

                count = await prune_idempotency_keys(sessionmaker, older_than=KEY_TTL)
                PRUNED.labels("idempotency_keys").inc(count)
                deleted["idempotency_keys"] = count
            if any(deleted.values()):
                log.info("retention deleted %s", deleted)
        except Exception as exc:
            log.warning("retention failed: %s", error_text(exc))
        await asyncio.sleep(interval)
