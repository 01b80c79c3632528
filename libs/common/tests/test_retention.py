"""Nothing is kept forever, no secret is kept readable: outbox/inbox retention, sealed event
fields, and SQL errors that do not carry their parameters."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import make_engine, utcnow
from krika_common.events import InboxMessage, OutboxMessage, prune_events
from krika_common.events.sealed import SealBroken, new_key, seal, unseal


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
