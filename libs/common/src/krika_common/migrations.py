"""The Alembic environment every service's `migrations/env.py` reuses.

A service's env.py is two lines: import its models (so their tables join the metadata) and call
`run_migrations(SQLModel.metadata, Settings().database_url)`. The URL may be overridden through
`config.attributes["database_url"]` (the test plugin does that).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection, metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run, metadata)
    await engine.dispose()


def run_migrations(metadata: MetaData, database_url: str) -> None:
    url = context.config.attributes.get("database_url") or database_url
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection, metadata)
        return
    asyncio.run(_run_online(url, metadata))
