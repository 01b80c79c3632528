"""Nothing is kept forever, no secret is kept readable: outbox/inbox/idempotency-key retention,
sealed event fields, and SQL errors that do not carry their parameters."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import make_engine, utcnow
from krika_common.events import InboxMessage, OutboxMessage, prune_events, run_retention
from krika_common.events.sealed import SealBroken, new_key, seal, unseal
from krika_common.idempotency import IdempotencyKey
from krika_common.testing import eventually


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        query = text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names in this file
        return int((await conn.execute(query)).scalar_one())


async def test_published_outbox_and_old_inbox_rows_are_pruned(
    sessionmaker: async_sessionmaker[AsyncSession], clean_db: AsyncEngine
) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=10), now - timedelta(days=1)
    async with sessionmaker() as session, session.begin():
        for created, published in (
            (old, old),  # published long ago: goes
            (old, None),  # never published, however old: stays
            (recent, recent),  # published recently: stays
        ):
            for _ in range(3):
                session.add(
                    OutboxMessage(
                        event_id=uuid.uuid4(),
                        event_type="test.kept",
                        envelope={},
                        created_at=created,
                        published_at=published,
                    )
                )
        for received in (now - timedelta(days=40), now - timedelta(days=2)):
            for _ in range(3):
                session.add(
                    InboxMessage(
                        consumer="test",
                        event_id=uuid.uuid4(),
                        event_type="t.e",
                        received_at=received,
                    )
                )
    deleted = await prune_events(
        sessionmaker,
        outbox_retention=timedelta(days=7),
        inbox_retention=timedelta(days=30),
        batch=2,  # several batches
    )
    assert deleted == {"outbox": 3, "inbox": 3}
    assert await count(clean_db, "outbox") == 6
    assert await count(clean_db, "outbox WHERE published_at IS NULL") == 3
    assert await count(clean_db, "inbox") == 3


def test_a_sealed_secret_opens_only_with_the_consumers_key() -> None:
    key = new_key()
    sealed = seal("raw-reset-token", key)
    assert "raw-reset-token" not in sealed
    assert unseal(sealed, key) == "raw-reset-token"
    with pytest.raises(SealBroken):
        unseal(sealed, new_key())
    with pytest.raises(SealBroken):
        unseal(sealed[:-4] + "AAAA", key)


async def test_a_failed_statement_does_not_carry_its_parameters(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    secret = "$argon2id$v=19$m=65536$super-secret-hash"
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as failure:
                await conn.execute(
                    text("SELECT CAST(:hash AS text), CAST(:email AS text), 1 / 0"),
                    {"hash": secret, "email": "ada@example.com"},
                )
        assert secret not in str(failure.value)
        assert "ada@example.com" not in str(failure.value)
    finally:
        await engine.dispose()


async def _old_keys_and_a_published_event(
    sessionmaker: async_sessionmaker[AsyncSession], clean_db: AsyncEngine
) -> None:
    key_table = SQLModel.metadata.tables[IdempotencyKey.__tablename__]
    async with clean_db.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=[key_table]))
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        for n, hours in enumerate([25, 25, 1]):
            session.add(
                IdempotencyKey(
                    scope="u",
                    key=f"k{n}",
                    request_hash="0" * 64,
                    status_code=201,
                    response_body=b"{}",
                    created_at=now - timedelta(hours=hours),
                )
            )
        old = now - timedelta(days=10)
        session.add(
            OutboxMessage(
                event_id=uuid.uuid4(),
                event_type="test.old",
                envelope={},
                created_at=old,
                published_at=old,
            )
        )


@contextlib.asynccontextmanager
async def retention_running(
    sessionmaker: async_sessionmaker[AsyncSession], **kw: bool
) -> AsyncIterator[None]:
    task = asyncio.create_task(
        run_retention(sessionmaker, outbox_days=7, inbox_days=30, interval=3600, **kw)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_retention_prunes_expired_idempotency_keys_when_asked(
    sessionmaker: async_sessionmaker[AsyncSession], clean_db: AsyncEngine
) -> None:
    await _old_keys_and_a_published_event(sessionmaker, clean_db)
    async with retention_running(sessionmaker, idempotency_keys=True):
        await eventually(lambda: _is(clean_db, "idempotency_keys", 1), what="keys pruned")
    assert await count(clean_db, "outbox") == 0
    assert await count(clean_db, "idempotency_keys WHERE key = 'k2'") == 1


async def test_retention_leaves_idempotency_keys_alone_by_default(
    sessionmaker: async_sessionmaker[AsyncSession], clean_db: AsyncEngine
) -> None:
    await _old_keys_and_a_published_event(sessionmaker, clean_db)
    async with retention_running(sessionmaker):
        await eventually(lambda: _is(clean_db, "outbox", 0), what="a round of retention")
        await asyncio.sleep(0.1)
    assert await count(clean_db, "idempotency_keys") == 3


async def _is(engine: AsyncEngine, table: str, expected: int) -> bool:
    return await count(engine, table) == expected


def test_the_events_package_does_not_bring_the_idempotency_table() -> None:
    """A service without the table migrates `SQLModel.metadata`: autogenerate must not see it."""
    script = (
        "import sqlmodel, krika_common.events, krika_common.db, krika_common.web;"
        "print(sorted(sqlmodel.SQLModel.metadata.tables))"
    )
    tables = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "outbox" in tables
    assert "idempotency_keys" not in tables
