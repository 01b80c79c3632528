"""Redis is a cache: when it is down, reads and writes go on from the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app
from catalog.config import Settings
from krika_common.auth import StaticKeys
from krika_common.server import free_port
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys

from .conftest import Deliver
from .factories import Actor, create_category, create_service, kyc_approved, publish


@pytest_asyncio.fixture
async def no_redis_client(
    settings: Settings, test_keys: TestKeys, clean_db: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    dead = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "cache_timeout": 0.2}
    )
    app: FastAPI = create_app(dead, keys=StaticKeys(KeySet([test_keys.key])))
    async with app_client(app) as client:
        yield client


async def test_privileged_writes_fail_closed_without_redis(
    no_redis_client: httpx.AsyncClient,
    mint_token: Callable[..., str],
    deliver: Deliver,
) -> None:
    client = no_redis_client
    admin, provider = Actor(mint_token, "admin"), Actor(mint_token, "provider")
    await deliver(kyc_approved(provider.id))
    # Category writes are privileged: they fail closed when access marks cannot be read.
    refused = await client.post(
        "/catalog/categories", json={"name": "D", "slug": "design"}, headers=admin.headers
    )
    assert refused.status_code == 503
    assert refused.json()["error"] == "access_check_unavailable"


async def test_reads_fall_back_to_the_database(
    client: httpx.AsyncClient,
    no_redis_client: httpx.AsyncClient,
    admin: Actor,
    provider: Actor,
) -> None:
    category = await create_category(client, admin.headers, slug="design")
    service: dict[str, Any] = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])

    path = f"/catalog/services/{service['id']}"
    assert (await no_redis_client.get(path)).json()["title"] == "Logo design"
    assert (await no_redis_client.get("/catalog/categories")).json()["items"][0]["slug"] == "design"
    changed = await no_redis_client.patch(path, json={"title": "New"}, headers=provider.headers)
    assert changed.status_code == 200
    assert (await no_redis_client.get(path)).json()["title"] == "New"
    assert (await no_redis_client.get("/catalog/search", params={"q": "new"})).json()["items"]
