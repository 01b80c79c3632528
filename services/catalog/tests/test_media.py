"""Gallery media: images only, EXIF dropped, signed links, nothing stored on refusal."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest_asyncio
from PIL import Image

from .factories import Actor, create_service, jpeg_with_gps, publish

API = "/api/v1"


def stored_files(files_dir: Path) -> list[Path]:
    return [p for p in files_dir.rglob("*") if p.is_file()] if files_dir.exists() else []


def local(url: str) -> str:
    """The link as the service sees it (the gateway strips /api/v1)."""
    assert url.startswith(API + "/catalog/files/"), url
    return url.removeprefix(API)


@pytest_asyncio.fixture
async def draft(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any]
) -> dict[str, Any]:
    return await create_service(client, provider.headers, category["id"])


async def upload(
    client: httpx.AsyncClient, who: Actor, service_id: str, data: bytes, name: str = "a.jpg"
) -> httpx.Response:
    return await client.post(
        f"/catalog/services/{service_id}/media",
        files={"file": (name, data, "image/jpeg")},
        headers=who.headers,
    )


async def test_an_image_is_stored_without_exif_and_served_by_a_signed_link(
    client: httpx.AsyncClient, draft: dict[str, Any], provider: Actor, files_dir: Path
) -> None:
    response = await upload(client, provider, draft["id"], jpeg_with_gps())
    assert response.status_code == 201, response.text
    media = response.json()
    assert set(media) == {"id", "url"}

    served = await client.get(local(media["url"]))
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(served.content))
    assert dict(image.getexif()) == {}
    assert b"PhoneMaker" not in served.content
    assert len(stored_files(files_dir)) == 1

    page = (await client.get(f"/catalog/services/{draft['id']}", headers=provider.headers)).json()
    assert [m["id"] for m in page["media"]] == [media["id"]]
    assert (await client.get(local(page["media"][0]["url"]))).status_code == 200


async def test_altered_or_expired_links_are_403(
    client: httpx.AsyncClient, draft: dict[str, Any], provider: Actor
) -> None:
    url = local((await upload(client, provider, draft["id"], jpeg_with_gps())).json()["url"])
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    altered = {**query, "sig": ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]}
    response = await client.get(parts.path, params=altered)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_link"
    later = {**query, "expires": str(int(query["expires"]) + 60)}
    assert (await client.get(parts.path, params=later)).status_code == 403
    expired = {**query, "expires": "1000"}
    assert (await client.get(parts.path, params=expired)).status_code == 403
    other_file = parts.path[:-10] + "0123456789"
    assert (await client.get(other_file, params=query)).status_code in (403, 404)


async def test_a_bad_upload_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, draft: dict[str, Any], provider: Actor, files_dir: Path
) -> None:
    not_an_image = await upload(client, provider, draft["id"], b"<svg onload=alert(1)>", "x.jpg")
    assert not_an_image.status_code == 415
    assert not_an_image.json()["error"] == "unsupported_file_type"
    truncated = await upload(client, provider, draft["id"], jpeg_with_gps()[:200])
    assert truncated.status_code == 422
    empty = await upload(client, provider, draft["id"], b"")
    assert empty.status_code == 422
    pdf = await upload(client, provider, draft["id"], b"%PDF-1.4\n%%EOF\n", "x.pdf")
    assert pdf.status_code == 415
    assert stored_files(files_dir) == []
    page = (await client.get(f"/catalog/services/{draft['id']}", headers=provider.headers)).json()
    assert page["media"] == []


async def test_only_the_owner_uploads_and_deletes(
    client: httpx.AsyncClient,
    draft: dict[str, Any],
    provider: Actor,
    stranger: Actor,
    files_dir: Path,
) -> None:
    assert (await upload(client, stranger, draft["id"], jpeg_with_gps())).status_code == 404
    assert stored_files(files_dir) == []
    media = (await upload(client, provider, draft["id"], jpeg_with_gps())).json()
    path = f"/catalog/services/{draft['id']}/media/{media['id']}"

    assert (await client.delete(path, headers=stranger.headers)).status_code == 404
    assert (await client.delete(path, headers=provider.headers)).status_code == 204
    assert (await client.delete(path, headers=provider.headers)).status_code == 404
    assert stored_files(files_dir) == []


async def test_a_published_page_shows_new_media_at_once(
    client: httpx.AsyncClient, draft: dict[str, Any], provider: Actor
) -> None:
    await publish(client, provider.headers, draft["id"])
    path = f"/catalog/services/{draft['id']}"
    assert (await client.get(path)).json()["media"] == []  # cached
    media = (await upload(client, provider, draft["id"], jpeg_with_gps())).json()
    shown = (await client.get(path)).json()["media"]
    assert [m["id"] for m in shown] == [media["id"]]
    # Links are signed per answer, not cached: they are valid.
    assert (await client.get(local(shown[0]["url"]))).status_code == 200
