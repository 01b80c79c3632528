"""Reviews: only the customer of a completed order, once; the rating follows; one reply."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import Deliver
from .factories import Actor, create_service, order_completed, outbox_events, publish


@pytest_asyncio.fixture
async def live(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> dict[str, Any]:
    service = await create_service(client, provider.headers, category["id"])
    return await publish(client, provider.headers, service["id"])


async def review(
    client: httpx.AsyncClient, who: Actor, service_id: str, order_id: uuid.UUID, rating: int
) -> httpx.Response:
    return await client.post(
        f"/catalog/services/{service_id}/reviews",
        json={"order_id": str(order_id), "rating": rating, "text": "Great work"},
        headers=who.headers,
    )


async def test_only_the_customer_of_a_completed_order_reviews_once_and_the_rating_follows(
    client: httpx.AsyncClient,
    live: dict[str, Any],
    provider: Actor,
    mint_token: Any,
    deliver: Deliver,
    clean_db: AsyncEngine,
) -> None:
    alice, bob = Actor(mint_token, "customer"), Actor(mint_token, "customer")
    order = uuid.uuid4()
    path = f"/catalog/services/{live['id']}"
    assert (await client.get(path)).json()["rating_average"] is None  # cached, unrated

    early = await review(client, alice, live["id"], order, 5)
    assert early.status_code == 403
    assert early.json()["error"] == "not_eligible"

    await deliver(order_completed(live["id"], alice.id, provider.id, order_id=order))

    assert (await review(client, bob, live["id"], order, 1)).status_code == 403  # not his order
    first = await review(client, alice, live["id"], order, 5)
    assert first.status_code == 201, first.text
    assert first.json()["rating"] == 5
    second = await review(client, alice, live["id"], order, 1)
    assert second.status_code == 409
    assert second.json()["error"] == "already_reviewed"

    page = (await client.get(path)).json()
    assert (page["rating_average"], page["rating_count"]) == (5.0, 1)

    for rating in (4, 4):
        another = uuid.uuid4()
        await deliver(order_completed(live["id"], bob.id, provider.id, order_id=another))
        assert (await review(client, bob, live["id"], another, rating)).status_code == 201
    page = (await client.get(path)).json()
    assert (page["rating_average"], page["rating_count"]) == (4.33, 3)
    search = (await client.get("/catalog/search")).json()["items"][0]
    assert (search["rating_average"], search["rating_count"]) == (4.33, 3)

    posted = await outbox_events(clean_db, "catalog.review_posted")
    assert len(posted) == 3
    assert posted[0]["data"]["customer_id"] == str(alice.id)
    assert posted[0]["data"]["provider_id"] == str(provider.id)
    assert posted[0]["data"]["rating"] == 5


async def test_an_order_of_another_service_does_not_qualify(
    client: httpx.AsyncClient,
    live: dict[str, Any],
    provider: Actor,
    category: dict[str, Any],
    mint_token: Any,
    deliver: Deliver,
) -> None:
    other = await create_service(client, provider.headers, category["id"], title="Other")
    alice = Actor(mint_token, "customer")
    order = uuid.uuid4()
    await deliver(order_completed(other["id"], alice.id, provider.id, order_id=order))
    response = await review(client, alice, live["id"], order, 5)
    assert response.status_code == 403


async def test_reviews_are_listed_newest_first_and_paged(
    client: httpx.AsyncClient,
    live: dict[str, Any],
    provider: Actor,
    mint_token: Any,
    deliver: Deliver,
) -> None:
    alice = Actor(mint_token, "customer")
    posted = []
    for rating in (3, 4, 5):
        order = uuid.uuid4()
        await deliver(order_completed(live["id"], alice.id, provider.id, order_id=order))
        posted.append((await review(client, alice, live["id"], order, rating)).json()["id"])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get(f"/catalog/services/{live['id']}/reviews", params=params)).json()
        seen += [r["id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == posted[::-1]
    bad = await client.get(f"/catalog/services/{live['id']}/reviews", params={"cursor": "xx"})
    assert bad.status_code == 400


async def test_the_provider_replies_once_and_nobody_else_can(
    client: httpx.AsyncClient,
    live: dict[str, Any],
    provider: Actor,
    stranger: Actor,
    mint_token: Any,
    deliver: Deliver,
) -> None:
    alice = Actor(mint_token, "customer")
    order = uuid.uuid4()
    await deliver(order_completed(live["id"], alice.id, provider.id, order_id=order))
    review_id = (await review(client, alice, live["id"], order, 4)).json()["id"]
    path = f"/catalog/reviews/{review_id}/reply"

    for someone in (stranger, alice):
        refused = await client.post(path, json={"text": "Me too"}, headers=someone.headers)
        assert refused.status_code == 404
    first = await client.post(path, json={"text": "Thank you!"}, headers=provider.headers)
    assert first.status_code == 200, first.text
    assert first.json()["reply"] == "Thank you!"
    again = await client.post(path, json={"text": "Again"}, headers=provider.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "already_replied"
    listed = (await client.get(f"/catalog/services/{live['id']}/reviews")).json()["items"]
    assert listed[0]["reply"] == "Thank you!"
    assert (await client.post(path, json={"text": ""}, headers=provider.headers)).status_code == 422


async def test_a_review_needs_a_rating_between_1_and_5(
    client: httpx.AsyncClient, live: dict[str, Any], mint_token: Any
) -> None:
    alice = Actor(mint_token, "customer")
    for rating in (0, 6):
        assert (await review(client, alice, live["id"], uuid.uuid4(), rating)).status_code == 422


async def test_concurrent_reviews_add_up_exactly(
    client: httpx.AsyncClient,
    live: dict[str, Any],
    provider: Actor,
    mint_token: Any,
    deliver: Deliver,
) -> None:
    import asyncio

    customers = [Actor(mint_token, "customer") for _ in range(8)]
    orders = [uuid.uuid4() for _ in customers]
    await deliver(
        *(
            order_completed(live["id"], c.id, provider.id, order_id=o)
            for c, o in zip(customers, orders, strict=True)
        )
    )
    ratings = [5, 4, 4, 3, 5, 2, 5, 4]

    answers = await asyncio.gather(
        *(
            review(client, c, live["id"], o, r)
            for c, o, r in zip(customers, orders, ratings, strict=True)
        )
    )

    assert [a.status_code for a in answers] == [201] * 8
    page = (await client.get(f"/catalog/services/{live['id']}")).json()
    assert page["rating_count"] == 8
    assert page["rating_average"] == round(sum(ratings) / 8, 2)
