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
from orders.app import create_app as create_orders
from orders.config import Settings as OrdersSettings
from orders.consumers import inbox_handlers as orders_inbox
from orders.worker import run_timers

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "orders_settings(**values): settings of the orders service the `gateway` fixture runs "
        "(e.g. unpaid_timeout=1.0)",
    )


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


@pytest_asyncio.fixture(scope="session")
async def orders_database_url(postgres_server_url: str, run_id: str) -> AsyncIterator[str]:
    """orders' own database for the run, migrated."""
    name = f"test_system_orders_{run_id}"
    url = await create_database(postgres_server_url, name)
    await asyncio.to_thread(alembic_upgrade, ROOT / "services" / "orders" / "alembic.ini", url)
    try:
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest_asyncio.fixture
async def orders_db(orders_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(orders_database_url, pool_size=2)
    await truncate_all(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def gateway(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_url: str,
    clean_db: AsyncEngine,
    catalog_db: AsyncEngine,
    orders_db: AsyncEngine,
    redis_client: Redis,
    tmp_path: Path,
    event_bus_factory: Callable[..., EventBus],
) -> AsyncIterator[httpx.AsyncClient]:
    """The real identity, catalog and orders services, their outbox relays, catalog's and
    orders' event consumers, orders' timer loops (two, as two workers would run them) and a
    gateway in front consuming identity's events (all on this run's exchange); a client on the
    gateway. `@pytest.mark.orders_settings(...)` sets orders' settings (e.g. its timeouts)."""
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
    publishers = [
        event_bus_factory("identity"),
        event_bus_factory("catalog"),
        event_bus_factory("orders"),
    ]
    relays = [
        OutboxRelay(make_sessionmaker(engine), bus, poll_interval=0.05)
        for engine, bus in zip((clean_db, catalog_db, orders_db), publishers, strict=True)
    ]
    catalog_events = event_bus_factory("catalog")
    catalog_inbox(PageCache(redis_client, timeout=1.0)).subscribe(
        catalog_events, make_sessionmaker(catalog_db)
    )
    marker = request.node.get_closest_marker("orders_settings")
    orders_settings = OrdersSettings(
        environment="test",
        database_url=str(orders_db.url.render_as_string(hide_password=False)),
        redis_url=redis_url,
        storage_url=f"file://{tmp_path / 'orders-files'}",
        file_link_secret=LINK_SECRET.decode(),
        edge_secret=EDGE,
        timer_poll_interval=0.05,
        **(marker.kwargs if marker else {}),
    )
    orders_events = event_bus_factory("orders")
    orders_inbox(orders_settings).subscribe(orders_events, make_sessionmaker(orders_db))
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
        orders_settings = orders_settings.model_copy(update={"jwks_url": jwks})
        orders_url = await stack.enter_async_context(serving(create_orders(orders_settings)))
        gw = create_gateway(
            GatewaySettings(
                environment="test",
                redis_url=redis_url,
                identity_url=identity_url,
                catalog_url=catalog_url,
                orders_url=orders_url,
                jwks_url=jwks,
                edge_secret=EDGE,
            ),
            event_bus=consumer,
        )
        for bus in (*publishers, catalog_events, orders_events):
            await bus.connect()
        await catalog_events.start()
        await orders_events.start()
        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        tasks += [
            asyncio.create_task(run_timers(make_sessionmaker(orders_db), orders_settings))
            for _ in range(2)
        ]
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
