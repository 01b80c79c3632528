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
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from identity.app import create_app as create_identity
from identity.config import Settings as IdentitySettings
from krika_common.db import make_sessionmaker
from krika_common.events import EventBus, OutboxRelay
from krika_common.testing import eventually
from krika_common.testing.http import serving
from krika_common.testing.storage import LINK_SECRET

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return ROOT / "services" / "identity" / "alembic.ini"


EDGE = "system-test-edge"


@pytest_asyncio.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    clean_db: AsyncEngine,
    redis_client: object,
    tmp_path: Path,
    event_bus_factory: Callable[..., EventBus],
) -> AsyncIterator[httpx.AsyncClient]:
    """The real identity service, its outbox relay, and a gateway in front of it consuming
    identity's events (all on this run's exchange); a client on the gateway."""
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
    publisher = event_bus_factory("identity")
    await publisher.connect()
    relay = OutboxRelay(make_sessionmaker(clean_db), publisher, poll_interval=0.05)
    consumer = event_bus_factory("gateway")
    async with serving(create_identity(settings)) as identity_url:
        gw = create_gateway(
            GatewaySettings(
                environment="test",
                redis_url=redis_url,
                identity_url=identity_url,
                jwks_url=f"{identity_url}/.well-known/jwks.json",
                edge_secret=EDGE,
            ),
            event_bus=consumer,
        )
        relaying = asyncio.create_task(relay.run())
        try:
            async with (
                serving(gw) as gateway_url,
                httpx.AsyncClient(base_url=gateway_url, timeout=30) as client,
            ):
                await eventually(consumer.is_consuming, what="the gateway consuming")
                yield client
        finally:
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
