"""System tests: several Krika services running together on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from joserfc.jwk import ECKey, RSAKey
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.app import create_app as create_catalog
from catalog.cache import PageCache
from catalog.config import Settings as CatalogSettings
from catalog.consumers import inbox_handlers as catalog_inbox
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from identity.app import create_app as create_identity
from identity.config import Settings as IdentitySettings
from krika_common.db import make_engine, make_sessionmaker
from krika_common.events import EventBus, OutboxRelay
from krika_common.testing import eventually
from krika_common.testing.databases import (
    alembic_upgrade,
    create_database,
    drop_database,
    truncate_all,
)
from krika_common.testing.http import serving
from krika_common.testing.storage import LINK_SECRET

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return ROOT / "services" / "identity" / "alembic.ini"


EDGE = "system-test-edge"


@pytest_asyncio.fixture(scope="session")
async def catalog_database_url(postgres_server_url: str, run_id: str) -> AsyncIterator[str]:
    """catalog's own database for the run, migrated (identity's is the plugin's `database_url`)."""
    name = f"test_system_catalog_{run_id}"
    url = await create_database(postgres_server_url, name)
    await asyncio.to_thread(alembic_upgrade, ROOT / "services" / "catalog" / "alembic.ini", url)
    try:
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest_asyncio.fixture
async def catalog_db(catalog_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(catalog_database_url, pool_size=2)
    await truncate_all(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    clean_db: AsyncEngine,
    catalog_db: AsyncEngine,
    redis_client: Redis,
    tmp_path: Path,
    event_bus_factory: Callable[..., EventBus],
) -> AsyncIterator[httpx.AsyncClient]:
    """The real identity and catalog services, their outbox relays, catalog's event consumers
    and a gateway in front consuming identity's events (all on this run's exchange); a client
    on the gateway."""
    key, link = tmp_path / "signing.pem", tmp_path / "link.pem"
    key.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
    link.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    settings = IdentitySettings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        signing_key_file=key,
        link_key_file=link,
        token_pepper="flow-test",
        storage_url=f"file://{tmp_path / 'identity-files'}",
        file_link_secret=LINK_SECRET.decode(),
        edge_secret=EDGE,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
    )
    publishers = [event_bus_factory("identity"), event_bus_factory("catalog")]
    relays = [
        OutboxRelay(make_sessionmaker(engine), bus, poll_interval=0.05)
        for engine, bus in zip((clean_db, catalog_db), publishers, strict=True)
    ]
    catalog_events = event_bus_factory("catalog")
    catalog_inbox(PageCache(redis_client, timeout=1.0)).subscribe(
        catalog_events, make_sessionmaker(catalog_db)
    )
    consumer = event_bus_factory("gateway")
    async with contextlib.AsyncExitStack() as stack:
        identity_url = await stack.enter_async_context(serving(create_identity(settings)))
        jwks = f"{identity_url}/.well-known/jwks.json"
        catalog_settings = CatalogSettings(
            environment="test",
            database_url=str(catalog_db.url.render_as_string(hide_password=False)),
            redis_url=redis_url,
            jwks_url=jwks,
            storage_url=f"file://{tmp_path / 'catalog-files'}",
            file_link_secret=LINK_SECRET.decode(),
            edge_secret=EDGE,
        )
        catalog_url = await stack.enter_async_context(serving(create_catalog(catalog_settings)))
        gw = create_gateway(
            GatewaySettings(
                environment="test",
                redis_url=redis_url,
                identity_url=identity_url,
                catalog_url=catalog_url,
                jwks_url=jwks,
                edge_secret=EDGE,
            ),
            event_bus=consumer,
        )
        for bus in (*publishers, catalog_events):
            await bus.connect()
        await catalog_events.start()
        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        try:
            gateway_url = await stack.enter_async_context(serving(gw))
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=gateway_url, timeout=30)
            )
            await eventually(consumer.is_consuming, what="the gateway consuming")
            yield client
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
