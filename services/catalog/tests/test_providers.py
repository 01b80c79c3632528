"""The providers read model: KYC and suspension from identity's events, in any order."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import Envelope, UserRolesChanged

from .conftest import Deliver
from .factories import (
    Actor,
    create_service,
    kyc_approved,
    kyc_rejected,
    kyc_submitted,
    now,
    publish,
    reinstated,
    search_ids,
    suspended,
)


async def kyc_status(engine: AsyncEngine, actor: Actor) -> str | None:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT kyc_status FROM providers WHERE user_id = :id"), {"id": actor.id}
        )
    return None if found is None else str(found)


async def test_suspension_hides_services_at_once_and_reinstatement_brings_them_back(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    path = f"/catalog/services/{service['id']}"
    assert (await client.get(path)).status_code == 200  # cached now
    assert await search_ids(client, q="logo") == [service["id"]]

    await deliver(suspended(provider.id, 2))

    assert (await client.get(path)).status_code == 404
    assert await search_ids(client, q="logo") == []
    assert await search_ids(client) == []
    assert (await client.get("/catalog/services", params={"provider_id": str(provider.id)})).json()[
        "items"
    ] == []

    await deliver(reinstated(provider.id, 3))

    assert (await client.get(path)).status_code == 200
    assert await search_ids(client, q="logo") == [service["id"]]


async def test_a_suspended_provider_cannot_publish(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await deliver(suspended(provider.id, 2))

    response = await client.post(
        f"/catalog/services/{service['id']}/publish", headers=provider.headers
    )
    assert response.status_code == 403
    assert response.json()["error"] == "account_suspended"


async def test_a_late_suspension_does_not_undo_a_newer_reinstatement(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    older, newer = suspended(provider.id, 2), reinstated(provider.id, 3)

    await deliver(newer)
    await deliver(older)  # arrives late

    assert await search_ids(client) == [service["id"]]
    assert (await client.get(f"/catalog/services/{service['id']}")).status_code == 200


async def test_a_late_reinstatement_does_not_undo_a_newer_suspension(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])

    await deliver(suspended(provider.id, 4))
    await deliver(reinstated(provider.id, 3))  # from an earlier suspension, late

    assert await search_ids(client) == []


async def test_a_duplicate_event_is_handled_once(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    suspension = Envelope.wrap(suspended(provider.id, 2), producer="identity")

    await deliver(suspension)
    await deliver(reinstated(provider.id, 3))
    await deliver(suspension)  # redelivered

    assert await search_ids(client) == [service["id"]]


async def test_roles_changed_carries_the_suspension_too(
    client: httpx.AsyncClient, provider: Actor, category: dict[str, Any], deliver: Deliver
) -> None:
    service = await create_service(client, provider.headers, category["id"])
    await publish(client, provider.headers, service["id"])
    await deliver(
        UserRolesChanged(
            user_id=provider.id,
            roles=["provider"],
            changed_at=now(),
            token_version=5,
            suspended=True,
        )
    )
    assert await search_ids(client) == []
    await deliver(suspended(provider.id, 4))  # older
    await deliver(reinstated(provider.id, 6))
    assert await search_ids(client) == [service["id"]]


async def test_approved_kyc_is_final_whatever_arrives_later(
    mint_token: Any, deliver: Deliver, clean_db: AsyncEngine
) -> None:
    actor = Actor(mint_token, "provider")
    await deliver(kyc_approved(actor.id, at=now(-10)))
    await deliver(kyc_rejected(actor.id, at=now(-20)))  # an older decision, late
    await deliver(kyc_submitted(actor.id, at=now(-30)))
    assert await kyc_status(clean_db, actor) == "approved"


async def test_kyc_follows_the_newest_event_whatever_the_order(
    mint_token: Any, deliver: Deliver, clean_db: AsyncEngine
) -> None:
    actor = Actor(mint_token, "provider")
    first_submitted, rejected, second_submitted = now(-30), now(-20), now(-10)

    await deliver(kyc_rejected(actor.id, at=rejected))
    await deliver(kyc_submitted(actor.id, at=first_submitted))  # the rejected one, late
    assert await kyc_status(clean_db, actor) == "rejected"

    await deliver(kyc_submitted(actor.id, at=second_submitted))  # a resubmission
    assert await kyc_status(clean_db, actor) == "pending"

    await deliver(kyc_approved(actor.id, at=now()))
    assert await kyc_status(clean_db, actor) == "approved"


async def test_an_approval_arriving_before_its_submission_still_counts(
    client: httpx.AsyncClient, mint_token: Any, deliver: Deliver, category: dict[str, Any]
) -> None:
    actor = Actor(mint_token, "provider")
    await deliver(kyc_approved(actor.id, at=now(-5)), kyc_submitted(actor.id, at=now(-60)))
    service = await create_service(client, actor.headers, category["id"])
    assert (await publish(client, actor.headers, service["id"]))["status"] == "published"
