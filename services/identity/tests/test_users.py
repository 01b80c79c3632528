from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.cli import grant_admin
from identity.config import Settings
from krika_common.pagination import encode_cursor

from .factories import bearer, login, make_admin, outbox_events, register


async def _admin(client: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, str]:
    admin = await register(client)
    await make_admin(engine, admin["id"])
    return bearer(await login(client, admin["email"]))


async def test_update_me_changes_only_the_profile(client: httpx.AsyncClient) -> None:
    user = await register(client)
    headers = bearer(await login(client, user["email"]))

    ok = await client.patch("/users/me", headers=headers, json={"full_name": "Ada N. Obi"})
    assert ok.status_code == 200
    assert ok.json()["full_name"] == "Ada N. Obi"
    sneaky = await client.patch("/users/me", headers=headers, json={"roles": ["admin"]})
    assert sneaky.status_code == 422
    assert (await client.get("/users/me", headers=headers)).json()["roles"] == ["customer"]


async def test_admin_routes_refuse_non_admins(client: httpx.AsyncClient) -> None:
    user = await register(client)
    headers = bearer(await login(client, user["email"]))

    for method, path in [
        ("GET", "/users"),
        ("GET", f"/users/{user['id']}"),
        ("PUT", f"/users/{user['id']}/roles"),
        ("POST", f"/users/{user['id']}/suspend"),
    ]:
        response = await client.request(method, path, headers=headers, json={"roles": ["admin"]})
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"


async def test_admin_lists_users_with_a_cursor(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    headers = await _admin(client, clean_db)
    for _ in range(4):
        await register(client, role="provider")

    first = await client.get("/users", headers=headers, params={"limit": 3})
    assert first.status_code == 200
    page = first.json()
    assert len(page["items"]) == 3
    assert page["next_cursor"]
    second = (
        await client.get(
            "/users", headers=headers, params={"limit": 3, "cursor": page["next_cursor"]}
        )
    ).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None
    ids = [u["id"] for u in page["items"] + second["items"]]
    assert len(set(ids)) == 5

    providers = (await client.get("/users", headers=headers, params={"role": "provider"})).json()
    assert len(providers["items"]) == 4
    for cursor in ("%%%", encode_cursor("yesterday", "x"), encode_cursor(1, 2), encode_cursor("a")):
        bad = await client.get("/users", headers=headers, params={"cursor": cursor})
        assert bad.status_code == 400, cursor
        assert bad.json()["error"] == "invalid_cursor"


async def test_admin_changes_roles(client: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    headers = await _admin(client, clean_db)
    user = await register(client)

    response = await client.put(
        f"/users/{user['id']}/roles", headers=headers, json={"roles": ["customer", "provider"]}
    )
    assert response.status_code == 200
    assert response.json()["roles"] == ["customer", "provider"]
    # The new roles ride in the tokens issued from now on.
    tokens = await login(client, user["email"])
    me = await client.get("/users/me", headers=bearer(tokens))
    assert me.json()["roles"] == ["customer", "provider"]
    invalid = await client.put(
        f"/users/{user['id']}/roles", headers=headers, json={"roles": ["god"]}
    )
    assert invalid.status_code == 422


async def test_suspension_refuses_access_and_ends_sessions(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    headers = await _admin(client, clean_db)
    user = await register(client)
    tokens = await login(client, user["email"])

    response = await client.post(
        f"/users/{user['id']}/suspend", headers=headers, json={"reason": "fraud"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "suspended"

    me = await client.get("/users/me", headers=bearer(tokens))  # token itself still unexpired
    assert me.status_code == 403
    assert me.json()["error"] == "account_suspended"
    refresh = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    relogin = await client.post(
        "/auth/login", json={"email": user["email"], "password": "Correct-Horse-42"}
    )
    assert relogin.status_code == 403
    assert relogin.json()["error"] == "account_suspended"
    events = await outbox_events(clean_db, "identity.user_suspended")
    assert [(e["data"]["user_id"], e["data"]["reason"]) for e in events] == [(user["id"], "fraud")]

    # Suspending again is idempotent: no second event.
    await client.post(f"/users/{user['id']}/suspend", headers=headers, json={})
    assert len(await outbox_events(clean_db, "identity.user_suspended")) == 1

    back = await client.post(f"/users/{user['id']}/reinstate", headers=headers)
    assert back.json()["status"] == "active"
    await login(client, user["email"])


async def test_admin_cannot_suspend_themselves(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin = await register(client)
    await make_admin(clean_db, admin["id"])
    headers = bearer(await login(client, admin["email"]))

    response = await client.post(f"/users/{admin['id']}/suspend", headers=headers, json={})
    assert response.status_code == 409
    assert response.json()["error"] == "cannot_modify_self"


async def test_unknown_user_is_404(client: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    headers = await _admin(client, clean_db)
    response = await client.get("/users/00000000-0000-0000-0000-000000000000", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"] == "user_not_found"


async def test_grant_admin_bootstraps_an_admin_like_an_admin_would(
    client: httpx.AsyncClient, clean_db: AsyncEngine, settings: Settings
) -> None:
    user = await register(client)
    assert await grant_admin(settings, user["email"].upper())
    assert not await grant_admin(settings, "nobody@example.com")
    tokens = await login(client, user["email"])
    listing = await client.get("/users", headers=bearer(tokens))
    assert listing.status_code == 200
    events = await outbox_events(clean_db, "identity.user_roles_changed")
    assert [(e["data"]["roles"], e["data"]["token_version"]) for e in events] == [
        (["admin", "customer"], 1)
    ]
