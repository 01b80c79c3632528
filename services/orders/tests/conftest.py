from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.auth import StaticKeys
from krika_common.db import make_sessionmaker
from krika_common.events import Envelope, EventData
from krika_common.testing.broker import handle_events
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys
from orders.app import create_app
from orders.config import Settings
from orders.consumers import inbox_handlers

from .factories import Actor, Market

HERE = Path(__file__).resolve().parent

Deliver = Callable[..., Awaitable[None]]


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return HERE.parent / "alembic.ini"


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def settings(database_url: str, redis_url: str, files_dir: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        edge_secret="test-edge-secret",
        storage_url=f"file://{files_dir}",
        file_link_secret="test-link-secret-test-link-secret!",
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


@pytest.fixture
def sessionmaker(clean_db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(clean_db)


@pytest.fixture
def deliver(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> Deliver:
    """Hand events to orders' inbox handlers as the worker would (one batch)."""
    handlers = inbox_handlers(settings)

    async def run(*events: EventData | Envelope) -> None:
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
def stranger(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "customer", "provider")


@pytest_asyncio.fixture
async def market(
    client: httpx.AsyncClient,
    deliver: Deliver,
    mint_token: Callable[..., str],
    customer: Actor,
    provider: Actor,
) -> Market:
    """A published service of `provider` (packages with 1 and 0 revisions) in orders' read
    model, and helpers to place and move its orders."""
    m = Market(client, deliver, mint_token, customer, provider)
    await m.publish()
    return m
