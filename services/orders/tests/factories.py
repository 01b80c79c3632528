"""Plain async helpers: catalog's and payments' events as orders receives them, and the API
driven the way a frontend would."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from krika_common.events import (
    EventData,
    PackageSnapshot,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    ServiceArchived,
    ServicePublished,
    ServiceUpdated,
)

Mint = Callable[..., str]
Deliver = Callable[..., Awaitable[None]]


def now(offset: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset)


class Actor:
    """A user with a token: `actor.headers` authenticates as them."""

    def __init__(self, mint: Mint, *roles: str, user_id: uuid.UUID | None = None) -> None:
        self.id = user_id or uuid.uuid4()
        self.headers = {"Authorization": f"Bearer {mint(self.id, roles)}"}


def packages(revisions: tuple[int, ...] = (1, 0)) -> list[PackageSnapshot]:
    return [
        PackageSnapshot(
            id=uuid.uuid4(),
            name=f"Package {i}",
            price=15_000_000 + i * 1000,
            currency="NGN",
            delivery_days=7 + i,
            revisions=r,
        )
        for i, r in enumerate(revisions)
    ]


def service_event(
    kind: type[ServicePublished | ServiceUpdated | ServiceArchived],
    service_id: uuid.UUID,
    provider_id: uuid.UUID,
    *,
    revision: int,
    status: str = "published",
    title: str = "Wedding photography",
    package_list: list[PackageSnapshot] | None = None,
) -> EventData:
    return kind(
        service_id=service_id,
        provider_id=provider_id,
        category_id=uuid.uuid4(),
        title=title,
        status=status,
        packages=package_list if package_list is not None else packages(),
        revision=revision,
        changed_at=now(),
    )


def payment(order: dict[str, Any], **overrides: Any) -> PaymentSucceeded:
    values: dict[str, Any] = {
        "payment_id": uuid.uuid4(),
        "order_id": order["id"],
        "customer_id": order["customer_id"],
        "reference": f"ref-{uuid.uuid4().hex[:10]}",
        "amount": order["price"],
        "currency": order["currency"],
        "paid_at": now(),
    }
    return PaymentSucceeded(**(values | overrides))


def payment_failure(order: dict[str, Any]) -> PaymentFailed:
    return PaymentFailed(
        payment_id=uuid.uuid4(),
        order_id=order["id"],
        customer_id=order["customer_id"],
        reference="ref-failed",
        reason="Declined",
        failed_at=now(),
    )


def refund(order: dict[str, Any]) -> RefundSucceeded:
    return RefundSucceeded(
        refund_id=uuid.uuid4(),
        order_id=order["id"],
        customer_id=order["customer_id"],
        reference="ref-refund",
        amount=order["price"],
        currency=order["currency"],
        refunded_at=now(),
    )


def refund_failure(order: dict[str, Any]) -> RefundFailed:
    return RefundFailed(
        refund_id=uuid.uuid4(),
        order_id=order["id"],
        customer_id=order["customer_id"],
        reference="ref-refund",
        amount=order["price"],
        currency=order["currency"],
        reason="Insufficient balance",
        failed_at=now(),
    )


async def outbox_types(engine: AsyncEngine) -> list[str]:
    """Every event type in the outbox, in the order recorded."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_type FROM outbox ORDER BY id"))
        return [r[0] for r in rows]


async def outbox_envelopes(engine: AsyncEngine, event_type: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT envelope FROM outbox WHERE event_type = :t ORDER BY id"),
            {"t": event_type},
        )
        return [r[0] for r in rows]


async def clear_outbox(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox"))


class Market:
    """One provider's published service and a customer, with the calls tests repeat."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        deliver: Deliver,
        mint: Mint,
        customer: Actor,
        provider: Actor,
    ) -> None:
        self.client = client
        self.mint = mint
        self.deliver = deliver
        self.customer = customer
        self.provider = provider
        self.service_id = uuid.uuid4()
        self.packages = packages()
        self.revision = 0

    async def publish(self, kind: type[Any] = ServicePublished, **kw: Any) -> None:
        self.revision += 1
        await self.deliver(
            service_event(
                kind,
                self.service_id,
                self.provider.id,
                revision=self.revision,
                package_list=self.packages,
                **kw,
            )
        )

    def body(self, package: int = 0, **kw: Any) -> dict[str, Any]:
        return {
            "service_id": str(self.service_id),
            "package_id": str(self.packages[package].id),
            "requirements": "Ceremony at 2pm",
        } | kw

    async def place(
        self, package: int = 0, *, who: Actor | None = None, key: str | None = None
    ) -> httpx.Response:
        headers = (who or self.customer).headers | {"Idempotency-Key": key or uuid.uuid4().hex}
        return await self.client.post("/orders", json=self.body(package), headers=headers)

    async def order(self, package: int = 0) -> dict[str, Any]:
        placed = await self.place(package)
        assert placed.status_code == 201, placed.text
        result: dict[str, Any] = placed.json()
        return result

    async def paid_order(self, package: int = 0) -> dict[str, Any]:
        order = await self.order(package)
        await self.deliver(payment(order))
        return order

    async def post(
        self, order: dict[str, Any], action: str, who: Actor, json: Any = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/orders/{order['id']}/{action}", json=json, headers=who.headers
        )

    async def act(
        self, order: dict[str, Any], action: str, who: Actor, json: Any = None
    ) -> dict[str, Any]:
        answer = await self.post(order, action, who, json)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def delivered_order(self, package: int = 0) -> dict[str, Any]:
        order = await self.paid_order(package)
        await self.act(order, "start", self.provider)
        await self.act(order, "deliver", self.provider, {"message": "Here it is"})
        return order

    async def history(self, order: dict[str, Any], who: Actor | None = None) -> list[Any]:
        answer = await self.client.get(
            f"/orders/{order['id']}/history", headers=(who or self.customer).headers
        )
        assert answer.status_code == 200, answer.text
        items: list[Any] = answer.json()["items"]
        return items
