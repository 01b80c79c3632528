"""Plain async helpers that drive the API the way a frontend would."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from joserfc.jwk import ECKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events.sealed import unseal

PASSWORD = "Correct-Horse-42"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def register(
    client: httpx.AsyncClient, *, role: str = "customer", email: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "email": email or new_email(),
        "password": PASSWORD,
        "full_name": "Ada Obi",
        "role": role,
        **extra,
    }
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def make_admin(engine: AsyncEngine, user_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET roles = ARRAY['admin'] WHERE id = :id"), {"id": user_id}
        )


async def outbox_events(engine: AsyncEngine, event_type: str | None = None) -> list[dict[str, Any]]:
    """Envelopes written to the outbox (what the relay will publish), oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT envelope FROM outbox ORDER BY id"))
        envelopes = [dict(r[0]) for r in rows]
    return [e for e in envelopes if event_type is None or e["type"] == event_type]


async def link_token(
    engine: AsyncEngine, event_type: str, key: ECKey, user_id: str | None = None
) -> str:
    """The one-time token of the newest such event (for `user_id`), unsealed as notify would."""
    events = await outbox_events(engine, event_type)
    mine = [e for e in events if user_id is None or e["data"]["user_id"] == user_id]
    return unseal(mine[-1]["data"]["sealed_token"], key)
