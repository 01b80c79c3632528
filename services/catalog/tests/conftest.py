from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from catalog.app import create_app
from catalog.cache import PageCache
from catalog.config import Settings
from catalog.consumers import inbox_handlers
from krika_common.auth import StaticKeys
from krika_common.db import make_sessionmaker
from krika_common.events import Envelope, EventData
from krika_common.testing.broker import handle_events
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys

from .factories import Actor, create_category, kyc_approved

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
def deliver(sessionmaker: async_sessionmaker[AsyncSession], redis_client: Redis) -> Deliver:
    """Hand events to catalog's inbox handlers as the worker would (one batch)."""
    handlers = inbox_handlers(PageCache(redis_client, timeout=1.0))

    async def run(*events: EventData | Envelope) -> None:
        await handle_events(handlers, sessionmaker, *events)

    return run


@pytest.fixture
def admin(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "admin")


@pytest_asyncio.fixture
async def provider(mint_token: Callable[..., str], deliver: Deliver) -> Actor:
    """A provider whose KYC identity approved."""
    actor = Actor(mint_token, "provider")
    await deliver(kyc_approved(actor.id))
    return actor


@pytest.fixture
def stranger(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "provider", "customer")


@pytest_asyncio.fixture
async def category(client: httpx.AsyncClient, admin: Actor) -> dict[str, Any]:
    return await create_category(client, admin.headers, slug="design")
