from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import Deliver
from .factories import (
    Actor,
    create_service,
    outbox_events,
    package,
    publish,
    service_body,
)


async def test_a_provider_creates_a_draft_with_packages(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> None:
    body = service_body(
        category["id"],
        tags=["Logo", "logo", "branding"],
        packages=[package(9000, 2, name="Premium"), package(5000, 5)],
    )
    response = await client.post("/catalog/services", json=body, headers=provider.headers)

    assert response.status_code == 201, response.text
    service = response.json()
    assert service["status"] == "draft"
    assert service["provider_id"] == str(provider.id)
    assert service["tags"] == ["logo", "branding"]
    assert [p["name"] for p in service["packages"]] == ["Premium", "Basic"]
    assert all(p["id"] for p in service["packages"])
    assert service["starting_price"] == 5000
    assert service["currency"] == "NGN"
    assert service["rating_average"] is None
    assert service["rating_count"] == 0
    assert service["media"] == []
    assert service["faq"] == [{"question": "Sources?", "answer": "Yes, AI and SVG."}]
    assert service["published_at"] is None


async def test_only_providers_create_services(
    client: httpx.AsyncClient, mint_token: Any, category: dict[str, Any]
) -> None:
    customer = Actor(mint_token, "customer")
    body = service_body(category["id"])
    assert (
        await client.post("/catalog/services", json=body, headers=customer.headers)
    ).status_code == 403
    assert (await client.post("/catalog/services", json=body)).status_code == 401


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": "x" * 121},
        {"title": ""},
        {"description": "d" * 5001},
        {"tags": [f"t{i}" for i in range(11)]},
        {"tags": ["t" * 31]},
        {"packages": []},
        {"packages": [package(), package(), package(), package()]},
        {"packages": [package(price=0)]},
        {"packages": [package(price=10**12 + 1)]},
        {"packages": [package(days=0)]},
        {"packages": [package(days=366)]},
        {"packages": [package(revisions=21)]},
        {"packages": [package(), package(currency="USD")]},
        {"faq": [{"question": "q", "answer": "a"}] * 21},
        {"title": "bad\x00title"},
        {"unknown": 1},
    ],
)
async def test_input_limits(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], overrides: dict[str, Any]
) -> None:
    response = await client.post(
        "/catalog/services",
        json=service_body(category["id"], **overrides),
        headers=provider.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


async def test_unknown_category_is_refused(client: httpx.AsyncClient, provider: Actor) -> None:
    response = await client.post(
        "/catalog/services",
        json=service_body("00000000-0000-0000-0000-000000000000"),
        headers=provider.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_category"


async def test_drafts_are_invisible_to_everyone_but_their_owner(
    client: httpx.AsyncClient, provider: Actor, stranger: Actor, category: dict[str, Any]
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    path = f"/catalog/services/{service['id']}"

    assert (await client.get(path)).status_code == 404
    hidden = await client.get(path, headers=stranger.headers)
    assert hidden.status_code == 404
    assert hidden.json()["error"] == "service_not_found"
    assert (await client.get(path, headers=provider.headers)).json()["status"] == "draft"
    # Nor can anyone else change, publish or upload to it.
    assert (
        await client.patch(path, json={"title": "Mine"}, headers=stranger.headers)
    ).status_code == 404
    assert (await client.post(f"{path}/publish", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"{path}/archive", headers=stranger.headers)).status_code == 404
    assert await client.get("/catalog/search") is not None
    assert (await client.get("/catalog/search")).json()["items"] == []
    assert (await client.get(f"{path}/reviews")).status_code == 404


async def test_a_bad_token_on_a_public_read_is_refused(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    path = f"/catalog/services/{service['id']}"
    response = await client.get(path, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_lifecycle_and_its_events(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], clean_db: AsyncEngine
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    path = f"/catalog/services/{service['id']}"
    assert await outbox_events(clean_db) == []  # a draft is nobody's business

    published = await publish(client, provider.headers, service["id"])
    assert published["status"] == "published"
    assert published["published_at"] is not None
    assert (await client.get(path)).status_code == 200

    paused = await client.post(f"{path}/pause", headers=provider.headers)
    assert paused.json()["status"] == "paused"
    assert (await client.get(path)).status_code == 404
    assert (await client.get(path, headers=provider.headers)).json()["status"] == "paused"

    resumed = await publish(client, provider.headers, service["id"])
    assert resumed["published_at"] == published["published_at"]
    edited = await client.patch(
        path, json={"packages": [package(7000, 4)]}, headers=provider.headers
    )
    assert edited.status_code == 200, edited.text
    archived = await client.post(f"{path}/archive", headers=provider.headers)
    assert archived.json()["status"] == "archived"
    assert (await client.get(path)).status_code == 404

    again = await client.post(f"{path}/publish", headers=provider.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_transition"
    assert (
        await client.patch(path, json={"title": "New"}, headers=provider.headers)
    ).status_code == 409
    assert (await client.post(f"{path}/pause", headers=provider.headers)).status_code == 409

    events = await outbox_events(clean_db)
    assert [e["type"] for e in events] == [
        "catalog.service_published",
        "catalog.service_updated",  # paused
        "catalog.service_updated",  # resumed
        "catalog.service_updated",  # packages
        "catalog.service_archived",
    ]
    assert [e["data"]["status"] for e in events] == [
        "published",
        "paused",
        "published",
        "published",
        "archived",
    ]
    revisions = [e["data"]["revision"] for e in events]
    assert revisions == sorted(set(revisions))
    assert events[3]["data"]["packages"][0]["price"] == 7000
    assert events[0]["producer"] == "catalog"
    assert events[0]["data"]["service_id"] == service["id"]


async def test_pausing_a_draft_is_an_invalid_transition(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    response = await client.post(
        f"/catalog/services/{service['id']}/pause", headers=provider.headers
    )
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    archived = await client.post(
        f"/catalog/services/{service['id']}/archive", headers=provider.headers
    )
    assert archived.json()["status"] == "archived"


async def test_patch_changes_only_what_is_sent_and_keeps_package_ids(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> None:
    service = await create_service(
        client,
        provider.headers,
        category["id"],
        packages=[package(5000), package(8000, name="Pro")],
    )
    basic, pro = service["packages"]
    response = await client.patch(
        f"/catalog/services/{service['id']}",
        json={
            "title": "Logo design, fast",
            "packages": [{**package(9000, 1, name="Pro+"), "id": pro["id"]}, package(12000)],
        },
        headers=provider.headers,
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["title"] == "Logo design, fast"
    assert changed["description"] == service["description"]
    assert changed["packages"][0]["id"] == pro["id"]
    assert changed["packages"][0]["price"] == 9000
    assert basic["id"] not in {p["id"] for p in changed["packages"]}
    assert changed["starting_price"] == 9000
    assert changed["revision"] == service["revision"] + 1

    foreign = await client.patch(
        f"/catalog/services/{service['id']}",
        json={"packages": [{**package(), "id": basic["id"]}]},
        headers=provider.headers,
    )
    assert foreign.status_code == 422
    assert foreign.json()["error"] == "unknown_package"
    assert (
        await client.patch(
            f"/catalog/services/{service['id']}", json={"title": None}, headers=provider.headers
        )
    ).status_code == 422


async def test_a_cached_page_changes_after_an_update(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], redis_client: Any
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    path = f"/catalog/services/{service['id']}"

    first = await client.get(path)
    assert first.json()["title"] == "Logo design"
    assert await redis_client.keys(f"catalog:v1:page:service:{service['id']}:*")  # cached
    assert (await client.get(path)).json() == first.json()  # from the cache

    await client.patch(path, json={"title": "Vector logo"}, headers=provider.headers)
    assert (await client.get(path)).json()["title"] == "Vector logo"

    await client.post(f"{path}/pause", headers=provider.headers)
    assert (await client.get(path)).status_code == 404


async def test_my_services_lists_every_state(
    client: httpx.AsyncClient, provider: Actor, stranger: Actor, category: dict[str, Any]
) -> None:
    draft = await create_service(client, provider.headers, category["id"], title="Draft one")
    live = await create_service(client, provider.headers, category["id"], title="Live one")
    await publish(client, provider.headers, live["id"])

    mine = await client.get("/catalog/services/mine", headers=provider.headers)
    assert mine.status_code == 200, mine.text
    assert {(s["id"], s["status"]) for s in mine.json()["items"]} == {
        (draft["id"], "draft"),
        (live["id"], "published"),
    }
    theirs = await client.get("/catalog/services/mine", headers=stranger.headers)
    assert theirs.json()["items"] == []

    public = await client.get("/catalog/services", params={"provider_id": str(provider.id)})
    assert [s["id"] for s in public.json()["items"]] == [live["id"]]


async def test_unapproved_provider_cannot_publish_until_kyc_is_approved(
    client: httpx.AsyncClient, mint_token: Any, category: dict[str, Any], deliver: Deliver
) -> None:
    from .factories import kyc_approved

    newcomer = Actor(mint_token, "provider")
    service = await create_service(client, newcomer.headers, category["id"])
    refused = await client.post(
        f"/catalog/services/{service['id']}/publish", headers=newcomer.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "kyc_required"

    await deliver(kyc_approved(newcomer.id))

    assert (await publish(client, newcomer.headers, service["id"]))["status"] == "published"
