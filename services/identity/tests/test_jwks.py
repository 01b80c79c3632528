from __future__ import annotations

from pathlib import Path

import httpx
from joserfc.jwk import RSAKey

from krika_common.auth import JWKSClient, TokenVerifier
from krika_common.testing.jwt import TestKeys

from .factories import login, register


async def test_jwks_publishes_active_and_previous_keys(
    client: httpx.AsyncClient, key_files: tuple[Path, Path]
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    expected = {RSAKey.import_key(p.read_bytes()).thumbprint() for p in key_files}
    assert {k["kid"] for k in keys} == expected
    assert all("d" not in k and k["kty"] == "RSA" for k in keys)  # public halves only


async def test_access_token_verifies_against_the_jwks(client: httpx.AsyncClient) -> None:
    user = await register(client, role="provider")
    tokens = await login(client, user["email"])

    verifier = TokenVerifier(
        JWKSClient("http://testserver/.well-known/jwks.json", client),
        issuer="krika-identity",
        audience="krika",
    )
    principal = await verifier.verify(tokens["access_token"])
    assert str(principal.id) == user["id"]
    assert principal.roles == {"provider"}


async def test_token_signed_by_a_rotated_out_key_still_verifies(
    client: httpx.AsyncClient, key_files: tuple[Path, Path]
) -> None:
    user = await register(client)
    previous = RSAKey.import_key(key_files[1].read_bytes())
    previous.ensure_kid()
    token = TestKeys().mint(user["id"], key=previous)  # signed by the rotated-out key
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
