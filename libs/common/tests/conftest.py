"""The common lib's own tests: a fresh database with the `outbox` and `inbox` tables (the lib has
no migrations; each service migrates them with its own schema), plus `handled_event`, where test
handlers write their effects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import Column, Identity, Integer, MetaData, Table, Text, Uuid, pool
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import make_sessionmaker
from krika_common.events import InboxMessage, OutboxMessage
from krika_common.testing.databases import create_database, drop_database

# No unique key on purpose: a handler that ran twice shows as two rows.
_handled = Table(
    "handled_event",
    MetaData(),
    Column("id", Integer, Identity(), primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("note", Text),
)


@pytest_asyncio.fixture(scope="session")
async def database_url(postgres_server_url: str, run_id: str) -> AsyncIterator[str]:
    name = f"test_common_{run_id}"
    url = await create_database(postgres_server_url, name)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    tables = [SQLModel.metadata.tables[t] for t in ("outbox", "inbox")]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
            await conn.run_sync(_handled.metadata.create_all)
        await engine.dispose()
        yield url
    finally:
        await drop_database(postgres_server_url, name)


# The tables above are the lib's own: importing them is what registers them.
assert (OutboxMessage.__tablename__, InboxMessage.__tablename__) == ("outbox", "inbox")


@pytest_asyncio.fixture
async def sessionmaker(clean_db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(clean_db)
