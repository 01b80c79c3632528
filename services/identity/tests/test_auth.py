from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.app import create_app
from identity.config import Settings
from krika_common.testing.http import app_client

from .factories import PASSWORD, bearer, login, new_email, outbox_events, register


async def test_register_answers_the_account_and_records_events(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    email = new_email()
    user = await register(client, email=email.upper(), role="provider")

    assert user["email"] == email  # normalised
    assert user["roles"] == ["provider"]
    assert user["email_verified"] is False
    assert "password" not in str(user)
    assert "password_hash" not in user
    registered = await outbox_events(clean_db, "identity.user_registered")
    assert [e["data"]["user_id"] for e in registered] == [user["id"]]
    assert registered[0]["producer"] == "identity"
    verification = await outbox_events(clean_db, "identity.email_verification_requested")
    assert len(verification) == 1
    assert verification[0]["version"] == 2
    assert "token" not in verification[0]["data"]  # sealed for notify, never in clear
    assert verification[0]["data"]["sealed_token"].count(".") == 4  # a compact JWE


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"email": "not-an-email"}, "validation_error"),
        ({"password": "short1"}, "weak_password"),
        ({"password": "alllowercaseletters"}, "weak_password"),
        ({"password": "password123"}, "weak_password"),
        ({"role": "admin"}, "validation_error"),
        ({"is_admin": True}, "validation_error"),
        ({"full_name": ""}, "validation_error"),
    ],
)
async def test_register_rejects_bad_input(
    client: httpx.AsyncClient, clean_db: AsyncEngine, patch: dict[str, object], code: str
) -> None:
    body = {"email": new_email(), "password": PASSWORD, "full_name": "Ada Obi", "role": "customer"}
    response = await client.post("/auth/register", json={**body, **patch})

    assert response.status_code == 422
    assert response.json()["error"] == code
    assert await outbox_events(clean_db) == []


async def test_duplicate_email_is_a_conflict(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email=email)
    response = await client.post(
        "/auth/register",
        json={"email": email.title(), "password": PASSWORD, "full_name": "X Y", "role": "customer"},
    )
    assert response.status_code == 409
    assert response.json()["error"] == "email_taken"


async def test_login_gives_a_token_pair_that_opens_me(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["email"])

    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = await client.get("/users/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_wrong_password_and_unknown_account_look_the_same(client: httpx.AsyncClient) -> None:
    user = await register(client)
    wrong = await client.post(
        "/auth/login", json={"email": user["email"], "password": "Nope-12345"}
    )
    unknown = await client.post("/auth/login", json={"email": new_email(), "password": PASSWORD})

    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_credentials",
            "detail": "E-mail or password is wrong",
        }
    )


async def test_repeated_failures_are_throttled_per_account(client: httpx.AsyncClient) -> None:
    user = await register(client)
    bad = {"email": user["email"], "password": "Wrong-pass-1"}
    statuses = [(await client.post("/auth/login", json=bad)).status_code for _ in range(5)]
    assert statuses == [401] * 5

    blocked = await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "too_many_login_attempts"
    assert 0 < int(blocked.headers["Retry-After"]) <= 900


async def test_repeated_failures_are_throttled_per_ip(client: httpx.AsyncClient) -> None:
    for _ in range(8):  # eight different accounts, one failure each
        response = await client.post(
            "/auth/login", json={"email": new_email(), "password": "Wrong-pass-1"}
        )
        assert response.status_code == 401
    user = await register(client)
    blocked = await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await register(client)
    first = await login(client, user["email"])

    second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    third = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert third.status_code == 200

    # `first` again, now that its successor was used too: a replay, whoever sends it.
    replay = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["error"] == "refresh_token_reused"
    # The thief may hold the newest token: it died with the family.
    newest = third.json()["refresh_token"]
    after = await client.post("/auth/refresh", json={"refresh_token": newest})
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_refresh_token"


async def test_a_retried_refresh_gets_the_same_successor(client: httpx.AsyncClient) -> None:
    """The response to a refresh was lost (or two tabs refreshed at once): within the grace
    window the spent token answers its unused successor again, and the session lives on."""
    user = await register(client)
    first = await login(client, user["email"])
    body = {"refresh_token": first["refresh_token"]}
    answers = await asyncio.gather(*(client.post("/auth/refresh", json=body) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    successors = {a.json()["refresh_token"] for a in answers}
    assert len(successors) == 1
    assert len({a.json()["access_token"] for a in answers}) == 3
    (successor,) = successors
    onward = await client.post("/auth/refresh", json={"refresh_token": successor})
    assert onward.status_code == 200


async def test_a_replay_after_the_grace_window_revokes_the_family(
    settings: Settings, clean_db: AsyncEngine, redis_client: object
) -> None:
    async with app_client(create_app(settings.model_copy(update={"refresh_reuse_grace": 0}))) as c:
        user = await register(c)
        first = await login(c, user["email"])
        body = {"refresh_token": first["refresh_token"]}
        rotated = (await c.post("/auth/refresh", json=body)).json()
        await asyncio.sleep(0.01)
        replay = await c.post("/auth/refresh", json=body)
        assert replay.json()["error"] == "refresh_token_reused"
        gone = await c.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        assert gone.json()["error"] == "invalid_refresh_token"


async def test_reuse_revokes_only_that_family(client: httpx.AsyncClient) -> None:
    user = await register(client)
    laptop = await login(client, user["email"])
    phone = await login(client, user["email"])
    next_laptop = (
        await client.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    ).json()
    await client.post("/auth/refresh", json={"refresh_token": next_laptop["refresh_token"]})
    replay = await client.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert replay.json()["error"] == "refresh_token_reused"

    still = await client.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert still.status_code == 200


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["email"])

    out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    again = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_refresh_token"
    # Logging out twice, or with garbage, reveals nothing.
    assert (await client.post("/auth/logout", json={"refresh_token": "x" * 43})).status_code == 204


async def test_unknown_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_refresh_token"


async def test_me_requires_a_valid_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/users/me")).json()["error"] == "unauthorized"
    forged = await client.get("/users/me", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    assert forged.json()["error"] == "invalid_token"
