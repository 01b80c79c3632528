"""The HTTP edge: body limits per route, the OpenAPI document, operations routes."""

from __future__ import annotations

from typing import Any

import httpx

from .factories import Actor, create_service


async def test_the_media_route_takes_an_image_sized_body_and_nothing_else_does(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    path = f"/catalog/services/{service['id']}"
    big = b"\xff\xd8\xff" + b"0" * (10 * 1024 * 1024 + 10)  # over IMAGES.max_bytes
    too_big_image = await client.post(
        f"{path}/media", files={"file": ("a.jpg", big, "image/jpeg")}, headers=provider.headers
    )
    assert too_big_image.status_code == 413
    assert too_big_image.json()["error"] == "file_too_large"
    huge = b"0" * (12 * 1024 * 1024)
    over_route = await client.post(
        f"{path}/media", files={"file": ("a.jpg", huge, "image/jpeg")}, headers=provider.headers
    )
    assert over_route.status_code == 413
    assert over_route.json()["error"] == "payload_too_large"
    json_body = {"description": "x" * (2 * 1024 * 1024)}
    assert (await client.patch(path, json=json_body, headers=provider.headers)).status_code == 413


async def test_openapi_documents_the_contract(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/catalog/categories",
        "/catalog/categories/{ref}",
        "/catalog/services",
        "/catalog/services/mine",
        "/catalog/services/{service_id}",
        "/catalog/services/{service_id}/publish",
        "/catalog/services/{service_id}/pause",
        "/catalog/services/{service_id}/archive",
        "/catalog/services/{service_id}/media",
        "/catalog/services/{service_id}/media/{media_id}",
        "/catalog/services/{service_id}/reviews",
        "/catalog/reviews/{review_id}/reply",
        "/catalog/search",
        "/catalog/files/{folder}/{name}",
    ):
        assert path in paths, path
    publish = paths["/catalog/services/{service_id}/publish"]["post"]["responses"]
    assert {"403", "404", "409"} <= set(publish)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "redis"}
