"""The whole account flow as a frontend sees it: only through the gateway."""

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
from krika_common.testing.jwt import TestKeys
from krika_common.testing.plugin import serving

PASSWORD = "Correct-Horse-42"


@pytest_asyncio.fixture
async def gateway(
    database_url: str,
    redis_url: str,
    clean_db: AsyncEngine,
    redis_client: object,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
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


async def test_register_login_me_refresh_rotation_reuse_logout(gateway: httpx.AsyncClient) -> None:
    email = "flow-user@example.com"
    registered = await gateway.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Flow User", "role": "customer"},
    )
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["id"]

    login = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    first = login.json()
    assert set(first) >= {"access_token", "refresh_token", "token_type", "expires_in"}

    me = await gateway.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == user_id
    assert me.json()["email"] == email
    assert me.json()["roles"] == ["customer"]
    assert (await gateway.get("/api/v1/users/me")).status_code == 401

    refreshed = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    me2 = await gateway.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me2.status_code == 200

    reused = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.json()["error"] == "refresh_token_reused"
    revoked = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert revoked.status_code == 401

    third = (
        await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    out = await gateway.post("/api/v1/auth/logout", json={"refresh_token": third["refresh_token"]})
    assert out.status_code == 204
    after = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}
    )
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_refresh_token"


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/users/me"])
async def test_gateway_refuses_a_token_identity_never_signed(
    gateway: httpx.AsyncClient, path: str
) -> None:
    forged = TestKeys().mint(roles=["admin"])  # right shape, wrong key
    response = await gateway.get(path, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
