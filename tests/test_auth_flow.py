"""The whole account flow as a frontend sees it: only through the gateway."""

from __future__ import annotations

import httpx
import pytest

from krika_common.testing.jwt import TestKeys

PASSWORD = "Correct-Horse-42"


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
    # A retry of the same refresh (a lost response) gets the same successor...
    retried = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert retried.status_code == 200
    assert retried.json()["refresh_token"] == second["refresh_token"]
    third_pair = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert third_pair.status_code == 200

    # ...but once the successor was used too, the spent token is a replay: the family dies.
    reused = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.json()["error"] == "refresh_token_reused"
    revoked = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": third_pair.json()["refresh_token"]}
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
