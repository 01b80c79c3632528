"""A fresh database per run, migrated by the service's own Alembic revisions, emptied between tests.

A service's conftest provides `alembic_ini` (its alembic.ini path); `database_url` is then a
fresh database, migrated by Alembic, dropped at the end of the run. Every test that uses
`session` or `clean_db` leaves the tables empty for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _on_server(server_url: str, statement: str) -> None:
    """Run one statement on the server's `postgres` database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(_asyncpg_dsn(f"{server_url}/postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str) -> str:
    await _on_server(server_url, f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


async def drop_database(server_url: str, name: str) -> None:
    await _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alembic_upgrade(alembic_ini: Path, database_url: str, revision: str = "head") -> None:
    cfg = Config(str(alembic_ini))
    cfg.set_main_option("script_location", str(alembic_ini.parent / "migrations"))
    cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    """Overridden by each service's conftest with the path of its alembic.ini."""
    raise pytest.UsageError("define an `alembic_ini` fixture in the service's conftest.py")


@pytest_asyncio.fixture(scope="session")
async def database_url(
    postgres_server_url: str, alembic_ini: Path, run_id: str
) -> AsyncIterator[str]:
    """A fresh database for this run, migrated with the service's Alembic migrations."""
    name = f"test_{alembic_ini.parent.name}_{run_id}"
    url = await create_database(postgres_server_url, name)
    try:
        # Alembic's env runs its own event loop: keep it off ours.
        await asyncio.to_thread(alembic_upgrade, alembic_ini, url)
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest_asyncio.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


async def truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        tables = [f'"{r[0]}"' for r in rows]
        if tables:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest_asyncio.fixture
async def clean_db(db_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The migrated database, emptied after the test."""
    yield db_engine
    await truncate_all(db_engine)


@pytest_asyncio.fixture
async def session(clean_db: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(clean_db, expire_on_commit=False) as s:
        yield s
