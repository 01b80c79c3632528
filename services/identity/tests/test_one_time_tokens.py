from __future__ import annotations

import httpx
from joserfc.jwk import ECKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import PASSWORD, bearer, link_token, login, outbox_events, register

NEW_PASSWORD = "Another-Secret-77"
RESET = "identity.password_reset_requested"


async def _verification_token(engine: AsyncEngine, user_id: str, key: ECKey) -> str:
    return await link_token(engine, "identity.email_verification_requested", key, user_id)


async def test_email_verification_is_single_use(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    user = await register(client)
    token = await _verification_token(clean_db, user["id"], link_key)

    first = await client.post("/auth/verify-email", json={"token": token})
    assert first.status_code == 200
    assert first.json()["email_verified"] is True
    second = await client.post("/auth/verify-email", json={"token": token})
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_token"


async def test_expired_verification_token_is_refused(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    user = await register(client)
    token = await _verification_token(clean_db, user["id"], link_key)
    async with clean_db.begin() as conn:
        await conn.execute(
            text("UPDATE one_time_tokens SET expires_at = now() - interval '1 second'")
        )

    response = await client.post("/auth/verify-email", json={"token": token})
    assert response.status_code == 400
    me = await client.get("/users/me", headers=bearer(await login(client, user["email"])))
    assert me.json()["email_verified"] is False


async def test_resend_voids_the_earlier_link(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    user = await register(client)
    old = await _verification_token(clean_db, user["id"], link_key)
    tokens = await login(client, user["email"])

    assert (
        await client.post("/auth/verify-email/resend", headers=bearer(tokens))
    ).status_code == 202
    new = await _verification_token(clean_db, user["id"], link_key)
    assert new != old
    assert (await client.post("/auth/verify-email", json={"token": old})).status_code == 400
    assert (await client.post("/auth/verify-email", json={"token": new})).status_code == 200


async def test_forgot_password_does_not_reveal_accounts(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    unknown = await client.post("/auth/forgot-password", json={"email": "nobody@example.com"})
    assert unknown.status_code == 202
    assert await outbox_events(clean_db, "identity.password_reset_requested") == []

    user = await register(client)
    known = await client.post("/auth/forgot-password", json={"email": user["email"]})
    assert known.status_code == 202
    assert known.content == unknown.content
    events = await outbox_events(clean_db, "identity.password_reset_requested")
    assert [e["data"]["user_id"] for e in events] == [user["id"]]


async def test_reset_password_changes_it_once_and_ends_sessions(
    client: httpx.AsyncClient, clean_db: AsyncEngine, link_key: ECKey
) -> None:
    user = await register(client)
    session = await login(client, user["email"])
    await client.post("/auth/forgot-password", json={"email": user["email"]})
    token = await link_token(clean_db, RESET, link_key)

    weak = await client.post("/auth/reset-password", json={"token": token, "password": "abc"})
    assert weak.status_code == 422
    done = await client.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204

    reused = await client.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reused.status_code == 400
    old = await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert old.status_code == 401
    await login(client, user["email"], NEW_PASSWORD)
    stale = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert stale.status_code == 401


async def test_change_password_needs_the_current_one(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["email"])

    wrong = await client.post(
        "/users/me/password",
        headers=bearer(tokens),
        json={"current_password": "Not-it-1234", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "wrong_password"
    ok = await client.post(
        "/users/me/password",
        headers=bearer(tokens),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert ok.status_code == 204
    await login(client, user["email"], NEW_PASSWORD)
