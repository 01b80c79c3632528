"""ledger's tests: the service runs as its own login role, a member of krika_ledger_writer
(granted by the migration through LEDGER_APP_ROLE), so every test exercises the grants that
make postings append-only; the tests' own fixtures connect as the owner."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.auth import StaticKeys
from krika_common.db import make_engine, make_sessionmaker
from krika_common.events import EventData
from krika_common.testing.broker import handle_events
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys
from ledger.app import create_app
from ledger.config import Settings
from ledger.consumers import inbox_handlers
from ledger.flows import Ledger
from ledger.journal import Journal

from .factories import Actor, Books

HERE = Path(__file__).resolve().parent
APP_ROLE = "krika_ledger_app_test"
APP_PASSWORD = "ledger-app-test"

Deliver = Callable[..., Awaitable[None]]


@pytest_asyncio.fixture(scope="session")
async def app_role(postgres_server_url: str) -> str:
    """The login role the service runs as; the migration grants it krika_ledger_writer."""
    dsn = make_url(f"{postgres_server_url}/postgres").set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE)
        if not exists:
            # Another test process may make it meanwhile.
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'")
    finally:
        await conn.close()
    os.environ["LEDGER_APP_ROLE"] = APP_ROLE
    return APP_ROLE


@pytest.fixture(scope="session")
def alembic_ini(app_role: str) -> Path:
    return HERE.parent / "alembic.ini"


@pytest.fixture
def app_database_url(database_url: str, app_role: str) -> str:
    url = make_url(database_url).set(username=app_role, password=APP_PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def settings(app_database_url: str, redis_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=app_database_url,
        redis_url=redis_url,
        edge_secret="test-edge-secret",
        commission_bps=1000,
        min_withdrawal=10_000,
        parked_retry_base=0.05,
        poll_interval=0.05,
    )


@pytest.fixture
def app(settings: Settings, test_keys: TestKeys) -> FastAPI:
    return create_app(settings, keys=StaticKeys(KeySet([test_keys.key])))


@pytest_asyncio.fixture
async def client(
    app: FastAPI, clean_db: AsyncEngine, redis_client: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as c:
        yield c


@pytest_asyncio.fixture
async def app_engine(app_database_url: str, clean_db: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The service's own connection (its role), for the event handlers and direct use."""
    engine = make_engine(app_database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(app_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(app_engine)


@pytest.fixture
def ledger(settings: Settings) -> Ledger:
    return Ledger(settings, Journal())


@pytest.fixture
def deliver(sessionmaker: async_sessionmaker[AsyncSession], ledger: Ledger) -> Deliver:
    """Hand events to ledger's inbox handlers as the worker would (one batch)."""
    handlers = inbox_handlers(ledger)

    async def run(*events: EventData) -> None:
        await handle_events(handlers, sessionmaker, *events)

    return run


@pytest.fixture
def customer(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "customer")


@pytest.fixture
def provider(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "provider")


@pytest.fixture
def admin(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "admin")


@pytest.fixture
def books(
    client: httpx.AsyncClient,
    deliver: Deliver,
    sessionmaker: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    customer: Actor,
    provider: Actor,
    admin: Actor,
) -> Books:
    return Books(client, deliver, sessionmaker, ledger, customer, provider, admin)
