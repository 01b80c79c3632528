"""payments' tests run the service on a real socket against the Paystack sandbox as a real
process (`payments.sandbox.testing.running_sandbox`), which sends its signed webhooks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
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

from krika_common.auth import StaticKeys
from krika_common.db import make_sessionmaker
from krika_common.testing.http import serving
from krika_common.testing.jwt import TestKeys
from payments.app import create_app, paystack_client
from payments.config import Settings
from payments.sandbox.testing import Sandbox, running_sandbox
from payments.service import Payments

from .factories import Actor, Market

HERE = Path(__file__).resolve().parent

# Our calls give up after PAYSTACK_TIMEOUT; the sandbox's forced "timeout" hangs longer.
PAYSTACK_TIMEOUT = 1.5


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return HERE.parent / "alembic.ini"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox process for the session (each test uses its own references)."""
    with running_sandbox(
        settle_after=0.2, webhook_retry_base=0.2, timeout_seconds=PAYSTACK_TIMEOUT + 2
    ) as running:
        yield running


def make_settings(database_url: str, redis_url: str, sandbox: Sandbox, **values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "edge_secret": "test-edge-secret",
        "paystack_base_url": sandbox.base_url,
        "paystack_secret_key": sandbox.secret_key,
        "paystack_timeout": PAYSTACK_TIMEOUT,
        "reconcile_after": 0.3,
        "followup_after": 0.2,
        "webhook_retry_base": 0.1,
        "poll_interval": 0.1,
    }
    return Settings(**(defaults | values))


@pytest.fixture
def settings(database_url: str, redis_url: str, sandbox: Sandbox) -> Settings:
    return make_settings(database_url, redis_url, sandbox)


@pytest.fixture
def app(settings: Settings, test_keys: TestKeys) -> FastAPI:
    return create_app(settings, keys=StaticKeys(KeySet([test_keys.key])))


@pytest.fixture
def sessionmaker(clean_db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(clean_db)


@pytest_asyncio.fixture
async def client(
    app: FastAPI, clean_db: AsyncEngine, redis_client: Redis, sandbox: Sandbox
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on payments served on a real port, the sandbox's webhooks pointed at it."""
    async with serving(app) as url:
        await sandbox.set_webhook_url(f"{url}/payments/webhooks/paystack")
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            yield c


@pytest_asyncio.fixture
async def deps(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Payments]:
    """What the worker's follow-up loop runs with (its own Paystack client)."""
    paystack = paystack_client(settings)
    yield Payments(settings, paystack, sessionmaker)
    await paystack.aclose()


@pytest.fixture
def customer(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "customer")


@pytest.fixture
def provider(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "provider")


@pytest.fixture
def admin(mint_token: Callable[..., str]) -> Actor:
    return Actor(mint_token, "admin")


@pytest_asyncio.fixture
async def market(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    deps: Payments,
    sandbox: Sandbox,
    customer: Actor,
    provider: Actor,
) -> Market:
    return Market(client, sessionmaker, deps, sandbox, customer, provider)
