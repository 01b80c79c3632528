"""KYC: a provider's documents, the admin queue, decisions, signed links, refused uploads."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.app import create_app
from identity.config import Settings
from krika_common.storage import Storage
from krika_common.testing.http import app_client
from krika_common.testing.storage import PDF, image_bytes, jpeg_with_gps, png_bomb, stored_keys

from .factories import bearer, login, make_admin, outbox_events, register

DETAILS = {
    "legal_name": "Adaeze Obi",
    "date_of_birth": "1990-04-21",
    "country": "NG",
    "document_type": "national_id",
}


def documents(**override: Any) -> dict[str, Any]:
    files: dict[str, Any] = {
        "document_front": ("front.jpg", image_bytes("JPEG"), "image/jpeg"),
        "document_back": ("back.pdf", PDF, "application/pdf"),
        "selfie": ("selfie.jpg", jpeg_with_gps(), "image/jpeg"),
    }
    files.update(override)
    return {name: file for name, file in files.items() if file is not None}


async def signed_in(client: httpx.AsyncClient, role: str) -> tuple[str, dict[str, str]]:
    user = await register(client, role=role)
    return user["id"], bearer(await login(client, user["email"]))


async def an_admin(client: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, str]:
    user = await register(client, role="customer")
    await make_admin(engine, user["id"])
    return bearer(await login(client, user["email"]))


async def submit(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    details: dict[str, str] | None = None,
    files: Any = None,
) -> httpx.Response:
    return await client.post(
        "/kyc/submissions",
        data=DETAILS if details is None else details,
        files=documents() if files is None else files,
        headers=headers,
    )


def storage_of(app: FastAPI) -> Storage:
    storage: Storage = app.state.identity.storage
    return storage


async def test_a_provider_submits_and_an_admin_approves(
    client: httpx.AsyncClient, app: FastAPI, clean_db: AsyncEngine
) -> None:
    provider_id, provider = await signed_in(client, "provider")
    assert (await client.get("/kyc/me", headers=provider)).json()["status"] == "none"

    response = await submit(client, provider)
    assert response.status_code == 201, response.text
    submission = response.json()
    assert submission["status"] == "pending"
    me = (await client.get("/kyc/me", headers=provider)).json()
    assert me["status"] == "pending"
    assert me["submission_id"] == submission["id"]
    [submitted] = await outbox_events(clean_db, "identity.kyc_submitted")
    assert submitted["data"]["user_id"] == provider_id

    admin = await an_admin(client, clean_db)
    queue = (await client.get("/kyc/submissions?status=pending", headers=admin)).json()
    assert [item["id"] for item in queue["items"]] == [submission["id"]]

    approved = await client.post(f"/kyc/submissions/{submission['id']}/approve", headers=admin)
    assert approved.status_code == 200, approved.text
    decision = approved.json()
    assert decision["status"] == "approved"
    assert decision["decided_by"] is not None
    assert decision["decided_at"] is not None
    assert (await client.get("/kyc/me", headers=provider)).json()["status"] == "approved"
    [event] = await outbox_events(clean_db, "identity.kyc_approved")
    assert event["data"]["user_id"] == provider_id
    assert event["data"]["decided_by"] == decision["decided_by"]
    assert (await client.get("/kyc/submissions?status=pending", headers=admin)).json()[
        "items"
    ] == []

    again = await submit(client, provider)
    assert again.status_code == 409
    assert again.json()["error"] == "kyc_already_approved"
    twice = await client.post(
        f"/kyc/submissions/{submission['id']}/reject", headers=admin, json={"reason": "late"}
    )
    assert twice.status_code == 409
    assert twice.json()["error"] == "kyc_not_pending"


async def test_a_rejected_provider_sees_the_reason_and_submits_again(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, provider = await signed_in(client, "provider")
    first = (await submit(client, provider)).json()
    waiting = await submit(client, provider)
    assert waiting.status_code == 409
    assert waiting.json()["error"] == "kyc_pending"

    admin = await an_admin(client, clean_db)
    rejected = await client.post(
        f"/kyc/submissions/{first['id']}/reject",
        json={"reason": "The selfie does not match the document"},
        headers=admin,
    )
    assert rejected.status_code == 200, rejected.text
    me = (await client.get("/kyc/me", headers=provider)).json()
    assert me == me | {"status": "rejected", "reason": "The selfie does not match the document"}
    [event] = await outbox_events(clean_db, "identity.kyc_rejected")
    assert event["data"]["reason"] == "The selfie does not match the document"

    second = await submit(client, provider)
    assert second.status_code == 201, second.text
    me = (await client.get("/kyc/me", headers=provider)).json()
    assert me["status"] == "pending"
    assert me["reason"] is None
    assert me["submission_id"] == second.json()["id"]


async def test_only_the_provider_and_admins_see_a_submission(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, provider = await signed_in(client, "provider")
    submission = (await submit(client, provider)).json()
    _, customer = await signed_in(client, "customer")
    _, other_provider = await signed_in(client, "provider")
    admin = await an_admin(client, clean_db)
    url = f"/kyc/submissions/{submission['id']}"

    assert (await client.get(url, headers=provider)).status_code == 200
    assert (await client.get(url, headers=admin)).status_code == 200
    for stranger in (customer, other_provider):
        response = await client.get(url, headers=stranger)
        assert response.status_code == 404
        assert response.json()["error"] == "kyc_submission_not_found"
        assert (await client.get("/kyc/submissions", headers=stranger)).status_code == 403
        decide = await client.post(f"{url}/approve", headers=stranger)
        assert decide.status_code == 403
    assert (await client.get(url)).status_code == 401
    missing = await client.get(f"/kyc/submissions/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404


async def test_a_customer_cannot_submit_and_nothing_is_stored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, customer = await signed_in(client, "customer")
    response = await submit(client, customer)
    assert response.status_code == 403
    assert response.json()["error"] == "providers_only"
    assert stored_keys(storage_of(app)) == []


async def test_an_admin_cannot_decide_their_own_submission(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    provider_id, provider = await signed_in(client, "provider")
    submission = (await submit(client, provider)).json()
    await make_admin(clean_db, provider_id)
    # Identity asks the database, not the token: the same user is now an admin.
    response = await client.post(f"/kyc/submissions/{submission['id']}/approve", headers=provider)
    assert response.status_code == 403
    assert response.json()["error"] == "cannot_review_own_submission"


async def test_two_admins_deciding_at_once_one_wins(
    client: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    _, provider = await signed_in(client, "provider")
    submission = (await submit(client, provider)).json()
    first, second = await an_admin(client, clean_db), await an_admin(client, clean_db)
    url = f"/kyc/submissions/{submission['id']}"
    answers = await asyncio.gather(
        client.post(f"{url}/approve", headers=first),
        client.post(f"{url}/reject", headers=second, json={"reason": "blurred"}),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    decided = (await outbox_events(clean_db, "identity.kyc_approved")) + (
        await outbox_events(clean_db, "identity.kyc_rejected")
    )
    assert len(decided) == 1


async def test_concurrent_submissions_make_one(
    client: httpx.AsyncClient, app: FastAPI, clean_db: AsyncEngine
) -> None:
    _, provider = await signed_in(client, "provider")
    answers = await asyncio.gather(*(submit(client, provider) for _ in range(3)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409]
    assert len(stored_keys(storage_of(app))) == 3  # one submission's files, no more


async def test_documents_open_through_fresh_signed_links_only(
    client: httpx.AsyncClient, app: FastAPI, clean_db: AsyncEngine
) -> None:
    _, provider = await signed_in(client, "provider")
    submission = (await submit(client, provider)).json()
    admin = await an_admin(client, clean_db)
    detail = (await client.get(f"/kyc/submissions/{submission['id']}", headers=admin)).json()
    by_kind = {d["kind"]: d for d in detail["documents"]}
    assert set(by_kind) == {"document_front", "document_back", "selfie"}
    assert detail["date_of_birth"] == "1990-04-21"
    assert by_kind["document_back"]["content_type"] == "application/pdf"

    selfie = by_kind["selfie"]
    url = urlsplit(selfie["url"])
    assert url.path.startswith("/api/v1/kyc/files/kyc/")
    local = url.path.removeprefix("/api/v1")
    opened = await client.get(f"{local}?{url.query}")  # no token: the link is the credential
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/jpeg"
    assert opened.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in opened.headers["content-security-policy"]
    image = Image.open(io.BytesIO(opened.content))
    assert not image.getexif().get_ifd(0x8825)  # the selfie's GPS position is gone
    assert not image.getexif()
    back = urlsplit(by_kind["document_back"]["url"])
    pdf = await client.get(f"{back.path.removeprefix('/api/v1')}?{back.query}")
    assert pdf.content == PDF

    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    key = url.path.removeprefix("/api/v1/kyc/files/")
    signer = storage_of(app).signer
    assert signer is not None
    expired = urlsplit(signer.url(key, timedelta(seconds=-5)))
    altered = {**query, "sig": ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]}
    extended = {**query, "expires": str(int(query["expires"]) + 3600)}
    other_file = urlsplit(by_kind["document_front"]["url"]).path.removeprefix("/api/v1")
    for path, params in (
        (local, expired.query),
        (local, urlencode(altered)),
        (local, urlencode(extended)),
        (other_file, url.query),  # a link for one file does not open another
    ):
        refused = await client.get(f"{path}?{params}")
        assert refused.status_code == 403, (path, params)
        assert refused.json()["error"] == "invalid_link"
    assert (await client.get(local)).status_code == 422  # no link at all


def _big_jpeg() -> bytes:
    return image_bytes("JPEG") + b"\0" * (10 * 1024 * 1024)


BAD_UPLOADS: list[tuple[str, dict[str, Any], dict[str, Any], int, str]] = [
    (
        "text as a document",
        {},
        {"document_front": ("id.jpg", b"hello, I am text", "image/jpeg")},
        415,
        "unsupported_file_type",
    ),
    (
        "a pdf as the selfie",
        {},
        {"selfie": ("me.pdf", PDF, "application/pdf")},
        415,
        "unsupported_file_type",
    ),
    ("empty", {}, {"document_back": ("back.jpg", b"", "image/jpeg")}, 422, "empty_file"),
    (
        "too big",
        {},
        {"document_front": ("front.jpg", _big_jpeg(), "image/jpeg")},
        413,
        "file_too_large",
    ),
    (
        "truncated image",
        {},
        {"selfie": ("me.jpg", image_bytes("JPEG")[:200], "image/jpeg")},
        422,
        "invalid_file",
    ),
    (
        "decompression bomb",
        {},
        {"selfie": ("me.png", png_bomb(), "image/png")},
        422,
        "image_too_large",
    ),
    ("passport with a back", {"document_type": "passport"}, {}, 422, "invalid_kyc_details"),
    ("id card without a back", {}, {"document_back": None}, 422, "invalid_kyc_details"),
    ("unknown country", {"country": "XX"}, {}, 422, "invalid_kyc_details"),
    ("under age", {"date_of_birth": "2020-01-01"}, {}, 422, "invalid_kyc_details"),
    ("impossible date", {"date_of_birth": "1990-02-30"}, {}, 422, "invalid_kyc_details"),
    ("date in another format", {"date_of_birth": "21/04/1990"}, {}, 422, "validation_error"),
    ("unknown document type", {"document_type": "library_card"}, {}, 422, "validation_error"),
]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_settings(settings: Settings, backend: str, request: pytest.FixtureRequest) -> Settings:
    if backend == "local":
        return settings
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"kyc-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{endpoint}/{bucket}").raise_for_status()
    return settings.model_copy(
        update={
            "storage_url": f"s3://{bucket}",
            "storage_endpoint": endpoint,
            "storage_region": "us-east-1",
            "storage_access_key_id": "test",
            "storage_secret_access_key": "test",
            "storage_allow_http": True,
        }
    )


@pytest.mark.parametrize(
    ("details", "files", "status", "error"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
async def test_a_bad_submission_is_refused_and_leaves_nothing(
    backend_settings: Settings,
    clean_db: AsyncEngine,
    redis_client: object,
    details: dict[str, Any],
    files: dict[str, Any],
    status: int,
    error: str,
) -> None:
    app = create_app(backend_settings)
    async with app_client(app) as client:
        _, provider = await signed_in(client, "provider")
        response = await submit(client, provider, DETAILS | details, documents(**files))
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        assert stored_keys(storage_of(app)) == []
        assert await outbox_events(clean_db, "identity.kyc_submitted") == []
        assert (await client.get("/kyc/me", headers=provider)).json()["status"] == "none"


async def test_the_files_are_stored_under_generated_keys_on_both_backends(
    backend_settings: Settings, clean_db: AsyncEngine, redis_client: object
) -> None:
    app = create_app(backend_settings)
    async with app_client(app) as client:
        _, provider = await signed_in(client, "provider")
        files = documents(document_front=("../../etc/passwd", image_bytes("PNG"), "text/plain"))
        response = await submit(client, provider, files=files)
        assert response.status_code == 201, response.text
        keys = stored_keys(storage_of(app))
        assert len(keys) == 3
        assert all(k.startswith("kyc/") and "passwd" not in k for k in keys)


@pytest.mark.parametrize(
    "form",
    [
        [("selfie", ("a.jpg", image_bytes("JPEG"), "image/jpeg"))],  # the selfie twice
        [("nickname", ("n.txt", b"ada", "text/plain"))],  # a field we do not know
    ],
    ids=["repeated field", "unknown field"],
)
async def test_a_form_with_extra_or_repeated_fields_is_refused(
    client: httpx.AsyncClient, app: FastAPI, form: list[tuple[str, Any]]
) -> None:
    _, provider = await signed_in(client, "provider")
    files = list(documents().items()) + form
    response = await submit(client, provider, files=files)
    assert response.status_code == 422
    assert response.json()["error"] == "unexpected_form_field"
    assert stored_keys(storage_of(app)) == []


async def test_only_the_submission_route_takes_a_big_body(client: httpx.AsyncClient) -> None:
    _, provider = await signed_in(client, "provider")
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    for path in ("/kyc/submissions/" + str(uuid.uuid4()) + "/reject", "/users/me"):
        response = await client.post(
            path, content=big, headers=provider | {"content-type": "application/json"}
        )
        assert response.status_code == 413, path


async def test_a_body_that_cannot_be_parsed_is_a_documented_400(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, provider = await signed_in(client, "provider")
    broken = await client.post(
        "/kyc/submissions",
        content=b"selfie=no-boundary",
        headers=provider | {"content-type": "multipart/form-data"},  # no boundary
    )
    assert broken.status_code == 400, broken.text
    assert broken.json()["error"] == "bad_request"
    documented = app.openapi()["paths"]["/kyc/submissions"]["post"]["responses"]["400"]
    assert "`bad_request`" in documented["description"]
    assert stored_keys(storage_of(app)) == []
