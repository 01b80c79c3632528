"""Issue 5's attacks replayed end to end: a hostile client, the gateway, identity, its outbox
relay and the events between them, all real."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.testing import eventually

PASSWORD = "Correct-Horse-42"


async def sign_up(gateway: httpx.AsyncClient, email: str) -> tuple[str, dict[str, str]]:
    body = {"email": email, "password": PASSWORD, "full_name": "Ada Obi", "role": "customer"}
    registered = await gateway.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    tokens = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return registered.json()["id"], tokens.json()


async def sign_up_admin(
    gateway: httpx.AsyncClient, engine: AsyncEngine, email: str
) -> tuple[str, dict[str, str]]:
    """An account made admin in identity's database, signed in again so its token says so."""
    user_id, _ = await sign_up(gateway, email)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET roles = ARRAY['admin'] WHERE id = :id"), {"id": user_id}
        )
    tokens = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return user_id, tokens.json()


async def test_a_suspended_admin_cannot_reinstate_themselves_with_a_second_header(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin_id, rogue = await sign_up_admin(gateway, clean_db, "rogue@example.com")
    _, boss = await sign_up_admin(gateway, clean_db, "boss@example.com")
    _, customer = await sign_up(gateway, "someone@example.com")

    suspended = await gateway.post(
        f"/api/v1/users/{admin_id}/suspend",
        headers={"Authorization": f"Bearer {boss['access_token']}"},
        json={"reason": "abuse"},
    )
    assert suspended.status_code == 200

    double = [
        ("Authorization", f"Bearer {rogue['access_token']}"),
        ("Authorization", f"Bearer {customer['access_token']}"),
    ]
    attempt = await gateway.post(f"/api/v1/users/{admin_id}/reinstate", headers=double)
    assert attempt.status_code == 400
    assert attempt.json()["error"] == "ambiguous_credentials"

    # Alone, the rogue's token is refused too: at the gateway once the suspension event
    # arrived, and by identity's own database check in any case.
    async def refused() -> bool:
        response = await gateway.post(
            f"/api/v1/users/{admin_id}/reinstate",
            headers={"Authorization": f"Bearer {rogue['access_token']}"},
        )
        return response.status_code == 403 and response.json()["error"] == "account_suspended"

    await eventually(refused, within=10, what="the suspended admin refused")


async def test_a_demoted_user_is_refused_at_the_gateway_until_they_refresh(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, boss = await sign_up_admin(gateway, clean_db, "boss@example.com")
    user_id, tokens = await sign_up(gateway, "seller@example.com")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await gateway.get("/api/v1/users/me", headers=headers)).status_code == 200

    changed = await gateway.put(
        f"/api/v1/users/{user_id}/roles",
        headers={"Authorization": f"Bearer {boss['access_token']}"},
        json={"roles": ["provider"]},
    )
    assert changed.status_code == 200

    async def revoked() -> bool:
        response = await gateway.get("/api/v1/users/me", headers=headers)
        return response.status_code == 401 and response.json()["error"] == "token_revoked"

    await eventually(revoked, within=10, what="the old token revoked at the gateway")
    refreshed = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    me = await gateway.get(
        "/api/v1/users/me",
        headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
    )
    assert me.status_code == 200
    assert me.json()["roles"] == ["provider"]


async def test_bad_input_is_a_4xx_and_the_next_request_is_fine(
    gateway: httpx.AsyncClient,
) -> None:
    """A NUL byte once gave a text/plain 500, and the connection identity then closed made the
    next request through the gateway a 502."""
    body = {"email": "nul@example.com", "password": PASSWORD, "full_name": "A\u0000B"}
    nul = await gateway.post("/api/v1/auth/register", json={**body, "role": "customer"})
    assert nul.status_code == 422
    assert nul.json()["error"] == "validation_error"
    nxt = await gateway.post(
        "/api/v1/auth/register",
        json={**body, "full_name": "Ada", "email": "ok@example.com", "role": "customer"},
    )
    assert nxt.status_code == 201
    assert nxt.headers.get_list("x-request-id") == [nxt.headers["x-request-id"]]


async def test_no_redirect_leaks_an_internal_address(gateway: httpx.AsyncClient) -> None:
    _, tokens = await sign_up(gateway, "slash@example.com")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = await gateway.get("/api/v1/users/me/", headers=headers)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "127.0.0.1" not in response.text
