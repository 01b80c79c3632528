"""Search: matching (typos, prefixes, accents), every filter, every sort, keyset paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import Deliver
from .factories import (
    Actor,
    create_category,
    create_service,
    kyc_approved,
    package,
    publish,
    search_ids,
    suspended,
)


@dataclass
class World:
    ids: dict[str, str]
    categories: dict[str, dict[str, Any]]
    provider: Actor
    other: Actor

    def names(self, ids: list[str]) -> list[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id.get(i, i) for i in ids]


async def set_rating(engine: AsyncEngine, service_id: str, average: str, count: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE services SET rating_average = CAST(:a AS numeric),"
                " rating_count = CAST(:c AS int),"
                " rating_sum = round(CAST(:a AS numeric) * CAST(:c AS int)) WHERE id = :id"
            ),
            {"a": average, "c": count, "id": service_id},
        )


@pytest_asyncio.fixture
async def world(
    client: httpx.AsyncClient,
    admin: Actor,
    provider: Actor,
    mint_token: Any,
    deliver: Deliver,
    clean_db: AsyncEngine,
) -> World:
    design = await create_category(client, admin.headers, slug="design")
    logos = await create_category(client, admin.headers, slug="logos", parent_id=design["id"])
    logos3d = await create_category(client, admin.headers, slug="3d-logos", parent_id=logos["id"])
    writing = await create_category(client, admin.headers, slug="writing")
    specs = {
        "A": ("Photography for weddings", ["photo", "wedding"], design, [package(20000, 7)]),
        "B": ("Café branding package", ["cafe", "branding"], logos, [package(5000, 3)]),
        "C": ("Logo design", ["logo"], logos3d, [package(10000, 10), package(15000, 2)]),
        "D": ("Blog writing", ["seo", "content"], writing, [package(3000, 1)]),
        "E": ("Product photos for shops", ["ecommerce"], design, [package(10000, 5)]),
    }
    ids: dict[str, str] = {}
    for name, (title, tags, cat, packages) in specs.items():
        created = await create_service(
            client,
            provider.headers,
            cat["id"],
            title=title,
            tags=tags,
            packages=packages,
            description=f"{title}: done well, on time.",
        )
        await publish(client, provider.headers, created["id"])
        ids[name] = created["id"]
    # Never listed: a draft, and a suspended provider's published service.
    await create_service(client, provider.headers, design["id"], title="Photography draft")
    other = Actor(mint_token, "provider")
    await deliver(kyc_approved(other.id))
    hidden = await create_service(client, other.headers, design["id"], title="Photography studio")
    await publish(client, other.headers, hidden["id"])
    await deliver(suspended(other.id, 1))
    for name, (average, count) in {"A": ("4.80", 5), "B": ("4.20", 3), "D": ("3.00", 1)}.items():
        await set_rating(clean_db, ids[name], average, count)
    await set_rating(clean_db, ids["E"], "4.20", 2)
    cats = {"design": design, "logos": logos, "3d-logos": logos3d, "writing": writing}
    return World(ids=ids, categories=cats, provider=provider, other=other)


async def names(client: httpx.AsyncClient, world: World, **params: Any) -> list[str]:
    return world.names(await search_ids(client, **params))


async def test_typo_and_prefix_and_accents(client: httpx.AsyncClient, world: World) -> None:
    assert await names(client, world, q="photgraphy") == ["A"]  # typo
    assert sorted(await names(client, world, q="photo")) == ["A", "E"]  # prefix
    assert await names(client, world, q="phot") != []
    assert await names(client, world, q="cafe") == ["B"]  # "Café"
    assert await names(client, world, q="CAFÉ") == ["B"]
    assert await names(client, world, q="wedding photography") == ["A"]
    assert await names(client, world, q="weddings") == ["A"]  # stemming
    # A prefix longer than the word's stem ("wedding" is stemmed `wed`): still found, as a
    # person typing sees it. The same for each letter typed.
    for typed in ("wed", "wedd", "weddi", "weddin"):
        assert await names(client, world, q=typed) == ["A"], typed
    assert await names(client, world, q="seo") == ["D"]  # a tag
    assert await names(client, world, q="zzzzqqq") == []
    # Letters that unaccent turns into tsquery syntax, stop words only, punctuation only.
    for odd in ("ab\u2474cd", "\u02d0x", "the", "!!!", "don't", "\u00bd"):
        response = await client.get("/catalog/search", params={"q": odd})
        assert response.status_code == 200, odd


async def test_relevance_puts_title_matches_before_description_matches(
    client: httpx.AsyncClient, world: World
) -> None:
    design = world.categories["design"]["id"]
    created = await create_service(
        client,
        world.provider.headers,
        design,
        title="Event video",
        tags=["video"],
        description="Birthdays, weddings and conferences, filmed and edited.",
    )
    await publish(client, world.provider.headers, created["id"])
    world.ids["F"] = created["id"]

    assert await names(client, world, q="wedding", sort="relevance") == ["A", "F"]
    assert await names(client, world, q="wedding", sort="newest") == ["F", "A"]


async def test_category_includes_its_subcategories(client: httpx.AsyncClient, world: World) -> None:
    by_slug = await names(client, world, category="design", sort="price_asc")
    assert sorted(by_slug) == ["A", "B", "C", "E"]
    assert sorted(await names(client, world, category="logos")) == ["B", "C"]
    by_id = await names(client, world, category=world.categories["3d-logos"]["id"])
    assert by_id == ["C"]
    assert await names(client, world, category="writing") == ["D"]
    assert await names(client, world, category="nope") == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"min_price": 10000}, ["A", "C", "E"]),
        ({"max_price": 10000}, ["B", "C", "D", "E"]),
        ({"min_price": 10000, "max_price": 10000}, ["C", "E"]),
        ({"min_price": 10001}, ["A"]),
        ({"max_delivery_days": 2}, ["C", "D"]),  # C: its second package takes 2 days
        ({"max_delivery_days": 3}, ["B", "C", "D"]),
        ({"min_rating": "4.2"}, ["A", "B", "E"]),
        ({"min_rating": "4.8"}, ["A"]),
        ({"min_rating": "0.1"}, ["A", "B", "D", "E"]),  # unrated C is out
        ({"q": "photo", "max_price": 15000}, ["E"]),
        ({"category": "design", "min_rating": "4.5"}, ["A"]),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, world: World, params: dict[str, Any], expected: list[str]
) -> None:
    assert sorted(await names(client, world, **params)) == expected


async def test_provider_filter(client: httpx.AsyncClient, world: World) -> None:
    assert len(await search_ids(client, provider_id=str(world.provider.id))) == 5
    assert await search_ids(client, provider_id=str(world.other.id)) == []


def tie(world: World, a: str, b: str, descending: bool) -> list[str]:
    return sorted([a, b], key=lambda n: world.ids[n], reverse=descending)


async def test_sorts(client: httpx.AsyncClient, world: World) -> None:
    assert await names(client, world, sort="price_asc") == [
        "D",
        "B",
        *tie(world, "C", "E", False),
        "A",
    ]
    assert await names(client, world, sort="price_desc") == [
        "A",
        *tie(world, "C", "E", True),
        "B",
        "D",
    ]
    assert await names(client, world, sort="rating") == ["A", *tie(world, "B", "E", True), "D", "C"]
    assert await names(client, world, sort="newest") == ["E", "D", "C", "B", "A"]
    # Without words, relevance is newest.
    assert await names(client, world) == ["E", "D", "C", "B", "A"]


async def walk(client: httpx.AsyncClient, on_page: Any = None, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for page in range(100):
        query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/catalog/search", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if on_page is not None:
            await on_page(page)
        if cursor is None:
            return seen
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "price_asc"},
        {"sort": "price_desc"},
        {"sort": "rating"},
        {"sort": "newest"},
        {"sort": "relevance", "q": "photo"},
        {"sort": "relevance", "q": "o"},
        {"sort": "price_asc", "category": "design"},
    ],
)
async def test_paging_one_by_one_visits_every_match_once(
    client: httpx.AsyncClient, world: World, params: dict[str, Any]
) -> None:
    everything = await search_ids(client, **params)
    assert await walk(client, **params) == everything


async def test_paging_stays_consistent_while_services_are_added(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await search_ids(client, sort="price_asc")
    added: list[str] = []

    async def insert(page: int) -> None:
        if page != 1:
            return
        design = world.categories["design"]["id"]
        for price in (1000, 99000):  # one before the cursor, one after it
            created = await create_service(
                client, world.provider.headers, design, packages=[package(price)]
            )
            await publish(client, world.provider.headers, created["id"])
            added.append(created["id"])

    seen = await walk(client, on_page=insert, sort="price_asc")

    assert len(seen) == len(set(seen))
    assert set(before) <= set(seen)
    assert added[0] not in seen  # cheaper than where the walk was
    assert seen[-1] == added[1]


async def test_bad_cursors_are_400(client: httpx.AsyncClient, world: World) -> None:
    for cursor in ("garbage", "W10", "WyJ4IiwxLCIyIl0"):
        response = await client.get("/catalog/search", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert response.json()["error"] == "invalid_cursor"
    first = await client.get("/catalog/search", params={"sort": "price_asc", "limit": 1})
    cursor = first.json()["next_cursor"]
    other_sort = await client.get("/catalog/search", params={"sort": "rating", "cursor": cursor})
    assert other_sort.status_code == 400
    assert (await client.get("/catalog/search", params={"limit": 51})).status_code == 422
    assert (await client.get("/catalog/search", params={"q": "x" * 101})).status_code == 422
    assert (await client.get("/catalog/search", params={"sort": "cheapest"})).status_code == 422


async def test_items_have_the_contract_fields(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/catalog/search", params={"q": "photgraphy"})
    (item,) = response.json()["items"]
    assert item["id"] == world.ids["A"]
    assert item["title"] == "Photography for weddings"
    assert item["provider_id"] == str(world.provider.id)
    assert item["starting_price"] == 20000
    assert item["currency"] == "NGN"
    assert item["rating_average"] == 4.8
    assert item["rating_count"] == 5
