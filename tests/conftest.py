"""System tests: several Krika services running together on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from joserfc.jwk import RSAKey
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from identity.app import create_app as create_identity
from identity.config import Settings as IdentitySettings
from krika_common.testing.plugin import serving

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return ROOT / "services" / "identity" / "alembic.ini"


@pytest_asyncio.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    clean_db: AsyncEngine,
    redis_client: object,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    """The real identity service and a gateway in front of it; a client on the gateway."""
    key = tmp_path / "signing.pem"
    key.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
    identity = create_identity(
        IdentitySettings(
            environment="test",
            database_url=database_url,
            redis_url=redis_url,
            signing_key_file=key,
            token_pepper="flow-test",
            argon2_time_cost=1,
            argon2_memory_cost=1024,
            argon2_parallelism=1,
        )
    )
    async with serving(identity) as identity_url:
        gw = create_gateway(
            GatewaySettings(
                environment="test",
                redis_url=redis_url,
                identity_url=identity_url,
                jwks_url=f"{identity_url}/.well-known/jwks.json",
            )
        )
        async with serving(gw) as gateway_url, httpx.AsyncClient(base_url=gateway_url) as client:
            yield client
