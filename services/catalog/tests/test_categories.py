"""Categories: admin writes, public cached reads that follow every write."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from .factories import Actor, create_category


async def test_admins_create_categories_and_anyone_reads_them(
    client: httpx.AsyncClient, admin: Actor, provider: Actor
) -> None:
    design = await create_category(client, admin.headers, slug="design", name="Design")
    logos = await create_category(client, admin.headers, slug="logos", parent_id=design["id"])
    assert logos["parent_id"] == design["id"]

    listed = await client.get("/catalog/categories")
    assert listed.status_code == 200
    assert listed.json() == {
        "items": [
            {"id": design["id"], "slug": "design", "name": "Design", "parent_id": None},
            {"id": logos["id"], "slug": "logos", "name": "Logos", "parent_id": design["id"]},
        ],
        "next_cursor": None,
    }
    assert (await client.get(f"/catalog/categories/{logos['id']}")).json() == logos
    assert (await client.get("/catalog/categories/logos")).json() == logos
    missing = await client.get("/catalog/categories/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "category_not_found"

    body = {"name": "X", "slug": "x"}
    assert (
        await client.post("/catalog/categories", json=body, headers=provider.headers)
    ).status_code == 403
    assert (await client.post("/catalog/categories", json=body)).status_code == 401


async def test_slugs_are_unique_and_parents_must_exist(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    await create_category(client, admin.headers, slug="design")
    taken = await client.post(
        "/catalog/categories", json={"name": "Again", "slug": "design"}, headers=admin.headers
    )
    assert taken.status_code == 409
    assert taken.json()["error"] == "slug_taken"
    orphan = await client.post(
        "/catalog/categories",
        json={
            "name": "Orphan",
            "slug": "orphan",
            "parent_id": "00000000-0000-0000-0000-000000000000",
        },
        headers=admin.headers,
    )
    assert orphan.status_code == 422
    assert orphan.json()["error"] == "parent_not_found"
    for slug in ("Bad Slug", "UPPER", "-x", "a" * 65, ""):
        response = await client.post(
            "/catalog/categories", json={"name": "N", "slug": slug}, headers=admin.headers
        )
        assert response.status_code == 422, slug


async def test_the_cached_list_changes_after_a_write(
    client: httpx.AsyncClient, admin: Actor, redis_client: Redis
) -> None:
    await create_category(client, admin.headers, slug="design")
    first = (await client.get("/catalog/categories")).json()["items"]
    assert [c["slug"] for c in first] == ["design"]
    assert await redis_client.keys("catalog:v1:page:categories:*")  # cached

    await create_category(client, admin.headers, slug="writing")

    assert [c["slug"] for c in (await client.get("/catalog/categories")).json()["items"]] == [
        "design",
        "writing",
    ]
    assert (await client.get("/catalog/categories/writing")).status_code == 200


async def test_the_list_is_paged(client: httpx.AsyncClient, admin: Actor) -> None:
    for slug in ("a", "b", "c"):
        await create_category(client, admin.headers, slug=slug)
    seen: list[str] = []
    cursor: Any = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/catalog/categories", params=params)).json()
        seen += [c["slug"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a", "b", "c"]
    assert (await client.get("/catalog/categories", params={"cursor": "!!"})).status_code == 400
