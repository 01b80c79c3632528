"""Fixtures: notify on a migrated database of its own, an SMTP capture server
(krika_common.testing.smtp: a real SMTP peer that can answer 421 or 550 on demand), the link key
identity seals tokens with, and `deliver(*events)`, which hands events to notify's inbox
handlers as its worker would and then sends what they queued."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import ECKey, KeySet
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.auth import StaticKeys
from krika_common.db import make_sessionmaker
from krika_common.events.sealed import new_key
from krika_common.testing.broker import handle_events
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys
from krika_common.testing.smtp import CaptureServer, capturing_smtp
from notify.app import create_app
from notify.config import Settings
from notify.consumers import inbox_handlers
from notify.mailer import Mailer, send_due
from notify.render import Templates
from notify.service import Notify

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[CaptureServer]:
    with capturing_smtp() as capture:
        yield capture


@pytest.fixture
def smtp(smtp_server: CaptureServer) -> CaptureServer:
    smtp_server.reset()
    return smtp_server


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return HERE.parent / "alembic.ini"


@pytest.fixture(scope="session")
def link_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ECKey, Path]:
    key = new_key()
    path = tmp_path_factory.mktemp("keys") / "notify-links.pem"
    path.write_bytes(key.as_pem(private=True))
    return key, path


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    smtp_server: CaptureServer,
    link_key: tuple[ECKey, Path],
) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        edge_secret="test-edge-secret",
        unsubscribe_secret="test-unsubscribe-secret-of-some-length",
        public_url="https://app.krika.test",
        api_public_url="https://api.krika.test",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout=5.0,
        link_key_file=link_key[1],
        retry_base=0.05,
        retry_max=0.2,
        poll_interval=0.05,
    )


@pytest.fixture(scope="session")
def templates() -> Templates:
    return Templates()


@pytest.fixture
def notify(settings: Settings, templates: Templates) -> Notify:
    return Notify(settings, templates)


@pytest.fixture
def mailer(notify: Notify, link_key: tuple[ECKey, Path]) -> Mailer:
    return Mailer(notify, link_key[0])


@pytest_asyncio.fixture
async def sessionmaker(clean_db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(clean_db)


Deliver = Callable[..., Awaitable[None]]


@pytest.fixture
def deliver(
    notify: Notify, mailer: Mailer, sessionmaker: async_sessionmaker[AsyncSession]
) -> Deliver:
    """Hand events (data or envelopes) to the inbox handlers, then send the queued e-mails."""
    handlers = inbox_handlers(notify)

    async def run(*events: Any, send: bool = True) -> None:
        await handle_events(handlers, sessionmaker, *events)
        if send:
            await send_all(sessionmaker, mailer)

    return run


async def send_all(sessionmaker: async_sessionmaker[AsyncSession], mailer: Mailer) -> None:
    while await send_due(sessionmaker, mailer):
        pass


@pytest.fixture
def app(settings: Settings, test_keys: TestKeys) -> FastAPI:
    return create_app(settings, keys=StaticKeys(KeySet([test_keys.key])))


@pytest_asyncio.fixture
async def client(
    app: FastAPI, clean_db: AsyncEngine, redis_client: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as c:
        yield c
