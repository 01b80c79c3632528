"""Through the gateway with real tokens: a provider gets verified (KYC) and sells (catalog).

identity, catalog and the gateway run as in production, talking over HTTP and RabbitMQ: the
catalog learns of the KYC decision and of suspensions only from identity's events.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import Envelope, EventBus, OrderCompleted
from krika_common.storage import LinkSigner
from krika_common.testing import eventually
from krika_common.testing.storage import LINK_SECRET, PDF, image_bytes, jpeg_with_gps

API = "/api/v1"
PASSWORD = "Correct-Horse-42"


async def sign_up(gateway: httpx.AsyncClient, role: str) -> tuple[str, dict[str, str]]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await gateway.post(
        f"{API}/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ada Obi", "role": role},
    )
    assert registered.status_code == 201, registered.text
    return registered.json()["id"], await sign_in(gateway, email)


async def sign_in(gateway: httpx.AsyncClient, email: str) -> dict[str, str]:
    tokens = await gateway.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def an_admin(gateway: httpx.AsyncClient, identity_db: AsyncEngine) -> dict[str, str]:
    """An account made admin in identity's database (as `identity.cli grant-admin` does)."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    registered = await gateway.post(
        f"{API}/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Root", "role": "customer"},
    )
    async with identity_db.begin() as conn:
        await conn.execute(
            text("UPDATE users SET roles = ARRAY['admin'] WHERE id = :id"),
            {"id": registered.json()["id"]},
        )
    return await sign_in(gateway, email)


def kyc_form() -> dict[str, Any]:
    return {
        "data": {
            "legal_name": "Adaeze Obi",
            "date_of_birth": "1990-04-21",
            "country": "NG",
            "document_type": "national_id",
        },
        "files": {
            "document_front": ("front.png", image_bytes("PNG"), "image/png"),
            "document_back": ("back.pdf", PDF, "application/pdf"),
            "selfie": ("selfie.jpg", jpeg_with_gps(), "image/jpeg"),
        },
    }


SERVICE = {
    "title": "Wedding photography in Lagos",
    "description": "A full day of photos, edited and delivered online.",
    "tags": ["photography", "wedding"],
    "packages": [
        {
            "name": "Basic",
            "description": "Four hours",
            "price": 15_000_000,
            "currency": "NGN",
            "delivery_days": 7,
            "revisions": 1,
        }
    ],
}


async def search_ids(gateway: httpx.AsyncClient, q: str) -> list[str]:
    found = await gateway.get(f"{API}/catalog/search", params={"q": q})
    assert found.status_code == 200, found.text
    return [item["id"] for item in found.json()["items"]]


async def test_kyc_approval_lets_a_provider_publish_and_suspension_hides_them(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin = await an_admin(gateway, clean_db)
    category = await gateway.post(
        f"{API}/catalog/categories",
        json={"name": "Photography", "slug": "photography", "parent_id": None},
        headers=admin,
    )
    assert category.status_code == 201, category.text
    provider_id, provider = await sign_up(gateway, "provider")
    _, customer = await sign_up(gateway, "customer")

    created = await gateway.post(
        f"{API}/catalog/services",
        json=SERVICE | {"category_id": category.json()["id"]},
        headers=provider,
    )
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    refused = await gateway.post(f"{API}/catalog/services/{service_id}/publish", headers=provider)
    assert refused.status_code == 403
    assert refused.json()["error"] == "kyc_required"
    assert (await gateway.get(f"{API}/catalog/services/{service_id}")).status_code == 404

    # A customer cannot get verified, nor read anyone's KYC.
    customer_kyc = await gateway.post(f"{API}/kyc/submissions", **kyc_form(), headers=customer)
    assert customer_kyc.status_code == 403
    submitted = await gateway.post(f"{API}/kyc/submissions", **kyc_form(), headers=provider)
    assert submitted.status_code == 201, submitted.text
    submission_id = submitted.json()["id"]
    for path in (f"/kyc/submissions/{submission_id}", "/kyc/submissions"):
        peek = await gateway.get(f"{API}{path}", headers=customer)
        assert peek.status_code in (403, 404), path
    assert (await gateway.get(f"{API}/kyc/submissions/{submission_id}")).status_code == 401

    # Still pending: catalog has heard of the submission, not of an approval.
    pending = await gateway.post(f"{API}/catalog/services/{service_id}/publish", headers=provider)
    assert pending.status_code == 403

    approved = await gateway.post(f"{API}/kyc/submissions/{submission_id}/approve", headers=admin)
    assert approved.status_code == 200, approved.text
    assert (await gateway.get(f"{API}/kyc/me", headers=provider)).json()["status"] == "approved"

    async def published() -> bool:
        answer = await gateway.post(
            f"{API}/catalog/services/{service_id}/publish", headers=provider
        )
        return answer.status_code == 200

    await eventually(published, what="catalog letting the approved provider publish")
    page = await gateway.get(f"{API}/catalog/services/{service_id}")  # public, no token
    assert page.status_code == 200
    assert page.json()["status"] == "published"
    assert page.json()["provider_id"] == provider_id
    assert await search_ids(gateway, "wedding") == [service_id]

    # Suspension: the provider's services leave search and their page at once (the event).
    second = await gateway.post(
        f"{API}/catalog/services",
        json=SERVICE | {"title": "Portrait sessions", "category_id": category.json()["id"]},
        headers=provider,
    )
    assert second.status_code == 201, second.text
    suspended = await gateway.post(
        f"{API}/users/{provider_id}/suspend", json={"reason": "fraud report"}, headers=admin
    )
    assert suspended.status_code == 200, suspended.text

    async def hidden() -> bool:
        gone = (await gateway.get(f"{API}/catalog/services/{service_id}")).status_code == 404
        return gone and await search_ids(gateway, "wedding") == []

    await eventually(hidden, what="the suspended provider's service vanishing")
    for action in ("publish", "pause"):  # their token is refused by now
        blocked = await gateway.post(
            f"{API}/catalog/services/{second.json()['id']}/{action}", headers=provider
        )
        assert blocked.status_code == 403
        assert blocked.json()["error"] == "account_suspended"

    reinstated = await gateway.post(f"{API}/users/{provider_id}/reinstate", headers=admin)
    assert reinstated.status_code == 200

    async def back() -> bool:
        return await search_ids(gateway, "wedding") == [service_id]

    await eventually(back, what="the reinstated provider's service coming back")


async def test_kyc_documents_open_only_through_fresh_signed_links(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    admin = await an_admin(gateway, clean_db)
    _, provider = await sign_up(gateway, "provider")
    submitted = await gateway.post(f"{API}/kyc/submissions", **kyc_form(), headers=provider)
    assert submitted.status_code == 201, submitted.text
    detail = await gateway.get(f"{API}/kyc/submissions/{submitted.json()['id']}", headers=admin)
    assert detail.status_code == 200
    selfie = next(d for d in detail.json()["documents"] if d["kind"] == "selfie")

    link = urlsplit(selfie["url"])
    opened = await gateway.get(f"{link.path}?{link.query}")  # no token: the link is enough
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/jpeg"
    assert not Image.open(io.BytesIO(opened.content)).getexif()  # EXIF (GPS) stripped

    key = link.path.removeprefix(f"{API}/kyc/files/")
    expired = urlsplit(LinkSigner(LINK_SECRET, f"{API}/kyc/files").url(key, timedelta(seconds=-1)))
    sig = link.query.partition("sig=")[2][:64]
    altered = link.query.replace(sig, ("1" if sig[0] == "0" else "0") + sig[1:])
    for path, query, status in (
        (expired.path, expired.query, 403),
        (link.path, altered, 403),
        (link.path, "", 422),  # no link parameters at all
    ):
        refused = await gateway.get(f"{path}?{query}")
        assert refused.status_code == status, (path, query, refused.text)
    bare = await gateway.get(link.path.replace("/kyc/files/", "/kyc/files/x/"))
    assert bare.status_code in (401, 404)  # not the public template: needs a token


async def published_service(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> tuple[str, dict[str, str], dict[str, str]]:
    """A published service of a freshly verified provider: (service id, provider, admin)."""
    admin = await an_admin(gateway, clean_db)
    category = await gateway.post(
        f"{API}/catalog/categories",
        json={"name": "Photography", "slug": f"photo-{uuid.uuid4().hex[:6]}", "parent_id": None},
        headers=admin,
    )
    _, provider = await sign_up(gateway, "provider")
    submitted = await gateway.post(f"{API}/kyc/submissions", **kyc_form(), headers=provider)
    await gateway.post(f"{API}/kyc/submissions/{submitted.json()['id']}/approve", headers=admin)
    created = await gateway.post(
        f"{API}/catalog/services",
        json=SERVICE | {"category_id": category.json()["id"]},
        headers=provider,
    )
    service_id = created.json()["id"]

    async def published() -> bool:
        answer = await gateway.post(
            f"{API}/catalog/services/{service_id}/publish", headers=provider
        )
        return answer.status_code == 200

    await eventually(published, what="the provider publishing")
    return service_id, provider, admin


async def test_search_forgives_typos_and_prefixes_and_a_cached_page_follows_an_update(
    gateway: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    service_id, provider, _ = await published_service(gateway, clean_db)
    for q in ("photgraphy", "photo", "WEDDING", "wedd"):  # a typo, prefixes, any case
        assert await search_ids(gateway, q) == [service_id], q
    assert await search_ids(gateway, "plumbing") == []

    path = f"{API}/catalog/services/{service_id}"
    assert (await gateway.get(path)).json()["title"] == SERVICE["title"]  # now cached
    changed = await gateway.patch(path, json={"title": "Wedding films in Abuja"}, headers=provider)
    assert changed.status_code == 200, changed.text
    assert (await gateway.get(path)).json()["title"] == "Wedding films in Abuja"
    assert await search_ids(gateway, "films") == [service_id]


async def test_only_the_customer_of_a_completed_order_reviews_once_and_the_rating_follows(
    gateway: httpx.AsyncClient,
    clean_db: AsyncEngine,
    event_bus_factory: Callable[..., EventBus],
) -> None:
    service_id, provider, _ = await published_service(gateway, clean_db)
    page = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    customer_id, customer = await sign_up(gateway, "customer")
    _, other_customer = await sign_up(gateway, "customer")
    order_id = uuid.uuid4()
    review = {"order_id": str(order_id), "rating": 4, "text": "Lovely pictures"}
    reviews = f"{API}/catalog/services/{service_id}/reviews"

    early = await gateway.post(reviews, json=review, headers=customer)
    assert early.status_code == 403  # the order is not completed (catalog has not heard of it)
    assert early.json()["error"] == "not_eligible"

    # What orders will publish when the customer accepts the work.
    orders = event_bus_factory("orders")
    await orders.connect()
    completed = OrderCompleted(
        order_id=order_id,
        service_id=uuid.UUID(service_id),
        package_id=uuid.UUID(page["packages"][0]["id"]),
        customer_id=uuid.UUID(customer_id),
        provider_id=uuid.UUID(page["provider_id"]),
        price=page["packages"][0]["price"],
        currency="NGN",
        completed_at=datetime.now(UTC),
    )
    envelope = Envelope.wrap(completed, producer="orders")
    await orders.publish(envelope)
    await orders.publish(envelope)  # delivered twice: still one right to review

    async def reviewed() -> bool:
        answer = await gateway.post(reviews, json=review, headers=customer)
        return answer.status_code == 201

    stranger = await gateway.post(reviews, json=review, headers=other_customer)
    assert stranger.status_code == 403
    assert (await gateway.post(reviews, json=review, headers=provider)).status_code == 403
    await eventually(reviewed, what="catalog allowing the review")
    again = await gateway.post(reviews, json=review | {"rating": 1}, headers=customer)
    assert again.status_code == 409
    assert again.json()["error"] == "already_reviewed"

    rated = (await gateway.get(f"{API}/catalog/services/{service_id}")).json()
    assert (rated["rating_average"], rated["rating_count"]) == (4.0, 1)
    listed = (await gateway.get(reviews)).json()["items"]
    assert [(r["rating"], r["text"]) for r in listed] == [(4, "Lovely pictures")]
    hit = (await gateway.get(f"{API}/catalog/search", params={"min_rating": 4})).json()
    assert [item["id"] for item in hit["items"]] == [service_id]
