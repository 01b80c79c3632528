"""Fixtures: chat on the Mongo-wire server (a database per run, emptied before each test), Redis
(Socket.IO's channel per test), a local file store; replicas served by uvicorn on real sockets,
and gateways in front of them with identity's JWKS served from the test keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from pymongo import AsyncMongoClient

from chat.app import asgi, create_app, open_mongo
from chat.config import Settings
from chat.hub import Hub
from gateway.app import create_app as create_gateway
from gateway.config import RateLimit
from gateway.config import Settings as GatewaySettings
from krika_common.auth import StaticKeys
from krika_common.config import HttpLimits
from krika_common.server import free_port
from krika_common.storage import Storage
from krika_common.testing.http import serving
from krika_common.testing.jwt import TestKeys

LINK_SECRET = b"chat-test-link-secret-of-32-bytes!!"


@pytest.fixture(scope="session")
def mongodb_database(run_id: str) -> str:
    return f"krika_chat_test_{run_id}".replace("-", "_")[:60]


@pytest_asyncio.fixture
async def clean_mongo(mongodb_url: str, mongodb_database: str) -> AsyncIterator[None]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        db = client[mongodb_database]
        for name in await db.list_collection_names():
            await db[name].delete_many({})
        yield
    finally:
        await client.close()


@pytest.fixture
def settings(
    mongodb_url: str, mongodb_database: str, redis_url: str, clean_mongo: None, redis_client: Any
) -> Settings:
    return Settings(
        environment="test",
        mongodb_url=mongodb_url,
        mongodb_database=mongodb_database,
        redis_url=redis_url,
        socketio_channel=f"krika:chat:test:{uuid.uuid4().hex}",
        edge_secret="gateway-test-edge",
        log_level="WARNING",
        file_link_secret=LINK_SECRET.decode(),
    )


@pytest_asyncio.fixture
async def mongo(settings: Settings) -> AsyncIterator[None]:
    """Beanie on the test database, for tests that use the documents without an app."""
    async with open_mongo(settings):
        yield


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage.open(tmp_path.as_uri(), link_secret=LINK_SECRET, link_base="/api/v1/chat/files")


@pytest.fixture
def make_app(settings: Settings, test_keys: TestKeys, storage: Storage) -> Callable[..., FastAPI]:
    def make(**overrides: Any) -> FastAPI:
        return create_app(
            settings.model_copy(update=overrides),
            keys=StaticKeys(KeySet([test_keys.key])),
            storage=storage,
        )

    return make


@contextlib.asynccontextmanager
async def replica(app: FastAPI) -> AsyncIterator[tuple[str, Hub]]:
    """A chat replica on a real port (lifespan included): (its base URL, its hub)."""
    async with serving(asgi(app), HttpLimits()) as url:
        yield url, app.state.hub


def jwks_app(keys: TestKeys) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return keys.jwks()

    return app


@pytest_asyncio.fixture(scope="session")
async def jwks_url(test_keys: TestKeys) -> AsyncIterator[str]:
    async with serving(jwks_app(test_keys)) as url:
        yield f"{url}/.well-known/jwks.json"


@pytest.fixture
def gateway_in_front(jwks_url: str, redis_url: str) -> Callable[..., Any]:
    """`gateway_in_front(chat_url)`: a real gateway (in uvicorn) routing to that chat replica."""

    @contextlib.asynccontextmanager
    async def start(chat_url: str, **overrides: Any) -> AsyncIterator[str]:
        settings = GatewaySettings(
            environment="test",
            chat_url=chat_url,
            identity_url=jwks_url.rsplit("/.well-known", 1)[0],
            jwks_url=jwks_url,
            redis_url=redis_url,
            rate_limit_default=RateLimit(per_user=100_000, per_ip=100_000),
            rate_limits={},
            log_level="WARNING",
            consume_events=False,
            edge_secret="gateway-test-edge",
            ops_port=free_port(),
            **overrides,
        )
        async with serving(create_gateway(settings)) as url:
            yield url

    return start
