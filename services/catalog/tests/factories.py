"""Plain async helpers that drive the API the way a frontend would, plus identity's and
orders' events as catalog receives them."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import (
    KycApproved,
    KycRejected,
    KycSubmitted,
    OrderCompleted,
    UserReinstated,
    UserSuspended,
)

Mint = Callable[..., str]


def now(offset: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset)


def auth(mint: Mint, user_id: uuid.UUID, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(user_id, roles or ('provider',))}"}


class Actor:
    """A user with a token: `actor.headers` authenticates as them."""

    def __init__(self, mint: Mint, *roles: str) -> None:
        self.id = uuid.uuid4()
        self.headers = auth(mint, self.id, *roles)


def kyc_approved(user_id: uuid.UUID, at: datetime | None = None) -> KycApproved:
    return KycApproved(
        submission_id=uuid.uuid4(),
        user_id=user_id,
        decided_by=uuid.uuid4(),
        decided_at=at or now(),
    )


def kyc_rejected(user_id: uuid.UUID, at: datetime) -> KycRejected:
    return KycRejected(
        submission_id=uuid.uuid4(),
        user_id=user_id,
        reason="blurry",
        decided_by=uuid.uuid4(),
        decided_at=at,
    )


def kyc_submitted(user_id: uuid.UUID, at: datetime) -> KycSubmitted:
    return KycSubmitted(submission_id=uuid.uuid4(), user_id=user_id, submitted_at=at)


def suspended(user_id: uuid.UUID, version: int) -> UserSuspended:
    return UserSuspended(user_id=user_id, reason="spam", suspended_at=now(), token_version=version)


def reinstated(user_id: uuid.UUID, version: int) -> UserReinstated:
    return UserReinstated(user_id=user_id, reinstated_at=now(), token_version=version)


def order_completed(
    service_id: str,
    customer_id: uuid.UUID,
    provider_id: uuid.UUID,
    order_id: uuid.UUID | None = None,
) -> OrderCompleted:
    return OrderCompleted(
        order_id=order_id or uuid.uuid4(),
        service_id=uuid.UUID(service_id),
        package_id=uuid.uuid4(),
        customer_id=customer_id,
        provider_id=provider_id,
        price=5000,
        currency="NGN",
        completed_at=now(),
    )


async def create_category(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    slug: str | None = None,
    parent_id: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    slug = slug or f"cat-{uuid.uuid4().hex[:8]}"
    body = {"name": name or slug.title(), "slug": slug, "parent_id": parent_id}
    response = await client.post("/catalog/categories", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def package(price: int = 5000, days: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "name": extra.pop("name", "Basic"),
        "description": "What you get",
        "price": price,
        "currency": "NGN",
        "delivery_days": days,
        "revisions": 1,
        **extra,
    }


def service_body(category_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Logo design",
        "description": "A clean, modern logo for your brand.",
        "category_id": category_id,
        "tags": ["logo", "branding"],
        "packages": [package()],
        "faq": [{"question": "Sources?", "answer": "Yes, AI and SVG."}],
    }
    body.update(overrides)
    return body


async def create_service(
    client: httpx.AsyncClient, owner: dict[str, str], category_id: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/catalog/services", json=service_body(category_id, **overrides), headers=owner
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def publish(
    client: httpx.AsyncClient, owner: dict[str, str], service_id: str
) -> dict[str, Any]:
    response = await client.post(f"/catalog/services/{service_id}/publish", headers=owner)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def search_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/catalog/search", params={"limit": 50, **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def outbox_events(engine: AsyncEngine, event_type: str | None = None) -> list[dict[str, Any]]:
    """Envelopes written to the outbox (what the relay will publish), oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT envelope FROM outbox ORDER BY id"))
        envelopes = [dict(r[0]) for r in rows]
    return [e for e in envelopes if event_type is None or e["type"] == event_type]


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, format="JPEG", exif=exif)
    return out.getvalue()
