"""The token is checked before anything is forwarded; only verified identity reaches upstreams."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from krika_common.access import AccessMarks
from krika_common.testing.jwt import TestKeys

from .upstreams import Upstreams

StartGateway = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
PRIVATE = "/api/v1/orders/mine"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "roles": ["admin"],
        "iss": "krika-identity",
        "aud": "krika",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        **extra,
    }


def unsigned_token(kid: str | None) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(_claims()).encode())}."


def hs256_with_public_key(keys: TestKeys) -> str:
    """The classic key-confusion attack: HMAC keyed with the RSA public key's PEM."""
    secret = keys.key.as_pem(private=False)
    signing_input = ".".join(
        [
            _b64(json.dumps({"alg": "HS256", "kid": keys.key.kid}).encode()),
            _b64(json.dumps(_claims()).encode()),
        ]
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


async def test_missing_token_is_401_and_not_forwarded(
    client: httpx.AsyncClient, upstreams: Upstreams
) -> None:
    response = await client.get(PRIVATE)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert upstreams.hits == []


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
async def test_not_a_bearer_token_is_401(
    client: httpx.AsyncClient, upstreams: Upstreams, authorization: str
) -> None:
    response = await client.get(PRIVATE, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert upstreams.hits == []


async def test_expired_token_is_token_expired(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    token = mint_token(ttl=-120)
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "token_expired"
    assert upstreams.hits == []


def _bad_tokens(keys: TestKeys) -> dict[str, str]:
    return {
        # Signed by another key but claiming the published key's id.
        "bad_signature": keys.mint(key=keys.stranger, header={"kid": keys.key.kid}),
        "alg_none": unsigned_token(keys.key.kid),
        "hs256_public_key": hs256_with_public_key(keys),
        "wrong_issuer": keys.mint(iss="someone-else"),
        "wrong_audience": keys.mint(aud="another-app"),
        "garbage": "not.a.jwt",
        "tampered_payload": _tamper(keys.mint(roles=["customer"])),
    }


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize(
    "case",
    [
        "bad_signature",
        "alg_none",
        "hs256_public_key",
        "wrong_issuer",
        "wrong_audience",
        "garbage",
        "tampered_payload",
    ],
)
async def test_invalid_tokens_are_401_invalid_token(
    client: httpx.AsyncClient, upstreams: Upstreams, test_keys: TestKeys, case: str
) -> None:
    token = _bad_tokens(test_keys)[case]
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert upstreams.hits == []


async def test_valid_token_is_forwarded_with_verified_identity(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    token = mint_token(sub=user, roles=["provider", "customer"])
    response = await client.get(
        PRIVATE + "?cursor=abc",
        headers={
            "Authorization": f"Bearer {token}",
            # A client pretending to be someone else, or to carry internal headers.
            "X-User-Id": str(uuid.uuid4()),
            "X-User-Roles": "admin",
            "X-Krika-Internal": "trust-me",
        },
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/orders/mine"
    assert seen["query"] == "cursor=abc"
    assert seen["headers"]["x-user-id"] == [str(user)]
    assert seen["headers"]["x-user-roles"] == ["customer,provider"]
    assert "x-krika-internal" not in seen["headers"]
    # Services verify the token again themselves.
    assert seen["headers"]["authorization"] == [f"Bearer {token}"]


async def test_unknown_kid_refetches_jwks_once_then_401(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    ok = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token()}"})
    assert ok.status_code == 200
    assert upstreams.jwks_fetches == 1  # fetched lazily, on first use

    unknown = RSAKey.generate_key(2048, auto_kid=True)
    token = mint_token(key=unknown)
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert upstreams.jwks_fetches == 2  # exactly one refetch

    # A known kid never costs a fetch.
    ok = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token()}"})
    assert ok.status_code == 200
    assert upstreams.jwks_fetches == 2


async def test_unknown_kids_refetch_at_most_once_per_cooldown(
    start_gateway: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    async with start_gateway(jwks_refetch_cooldown=3600) as client:
        ok = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token()}"})
        assert ok.status_code == 200
        for _ in range(3):
            token = mint_token(key=RSAKey.generate_key(2048, auto_kid=True))
            response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
        assert upstreams.jwks_fetches == 1


async def test_key_published_after_start_is_accepted_after_refetch(
    client: httpx.AsyncClient,
    upstreams: Upstreams,
    test_keys: TestKeys,
    mint_token: Callable[..., str],
) -> None:
    ok = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token()}"})
    assert ok.status_code == 200
    assert upstreams.jwks_fetches == 1

    # identity rotates: the new key appears in its JWKS.
    upstreams.jwks_keys.append(test_keys.stranger)
    token = mint_token(key=test_keys.stranger)
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert upstreams.jwks_fetches == 2
    # The old key still verifies, without another fetch.
    ok = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token()}"})
    assert ok.status_code == 200
    assert upstreams.jwks_fetches == 2


async def test_suspended_user_is_refused(
    client: httpx.AsyncClient,
    upstreams: Upstreams,
    mint_token: Callable[..., str],
    redis_client: Redis,
) -> None:
    suspended, other = uuid.uuid4(), uuid.uuid4()
    before = mint_token(sub=suspended, ver=2)
    await AccessMarks(redis_client, ttl=60).record(suspended, 3, suspended=True)
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {before}"})
    assert response.status_code == 403
    assert response.json()["error"] == "account_suspended"
    assert upstreams.hits == []
    response = await client.get(
        PRIVATE, headers={"Authorization": f"Bearer {mint_token(sub=other)}"}
    )
    assert response.status_code == 200


async def test_tokens_older_than_an_access_change_are_revoked(
    client: httpx.AsyncClient, mint_token: Callable[..., str], redis_client: Redis
) -> None:
    # Reinstated (or roles changed) at version 3: tokens from before are refused, new ones pass.
    user = uuid.uuid4()
    await AccessMarks(redis_client, ttl=600).record(user, 3, suspended=False)
    old = await client.get(PRIVATE, headers={"Authorization": f"Bearer {mint_token(sub=user)}"})
    assert old.status_code == 401
    assert old.json()["error"] == "token_revoked"
    fresh = mint_token(sub=user, ver=3)
    response = await client.get(PRIVATE, headers={"Authorization": f"Bearer {fresh}"})
    assert response.status_code == 200
