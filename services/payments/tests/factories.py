"""Plain async helpers: orders' and identity's events as payments receives them, the API driven
as a frontend would, the sandbox's checkout page paid as a browser would, and what payments
wrote to its outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    EventData,
    OrderCancelled,
    OrderPlaced,
    OutboxMessage,
    UserRegistered,
)
from krika_common.testing import eventually
from krika_common.testing.broker import handle_events
from payments.consumers import inbox_handlers
from payments.models import Payment
from payments.sandbox.testing import Sandbox
from payments.service import Payments
from payments.worker import follow_up_once

Mint = Callable[..., str]


def now() -> datetime:
    return datetime.now(UTC)


class Actor:
    """A user with a token: `actor.headers` authenticates as them."""

    def __init__(self, mint: Mint, *roles: str) -> None:
        self.id = uuid.uuid4()
        self.headers = {"Authorization": f"Bearer {mint(self.id, roles)}"}


class Market:
    """An order (as orders' event tells payments) and its payment, driven end to end."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        deps: Payments,
        sandbox: Sandbox,
        customer: Actor,
        provider: Actor,
    ) -> None:
        self.client = client
        self.sessionmaker = sessionmaker
        self.deps = deps
        self.sandbox = sandbox
        self.customer = customer
        self.provider = provider
        self._handlers = inbox_handlers()

    async def deliver(self, *events: EventData) -> None:
        await handle_events(self._handlers, self.sessionmaker, *events)

    async def place(self, price: int = 750_000, currency: str = "NGN") -> uuid.UUID:
        order_id = uuid.uuid4()
        await self.deliver(
            UserRegistered(
                user_id=self.customer.id,
                email=f"c{self.customer.id.hex[:8]}@example.com",
                full_name="Ada Customer",
                roles=["customer"],
            ),
            OrderPlaced(
                order_id=order_id,
                service_id=uuid.uuid4(),
                package_id=uuid.uuid4(),
                customer_id=self.customer.id,
                provider_id=self.provider.id,
                title="Logo design",
                price=price,
                currency=currency,
                placed_at=now(),
            ),
        )
        return order_id

    async def checkout(
        self, order_id: uuid.UUID, *, key: str | None = None, actor: Actor | None = None
    ) -> httpx.Response:
        headers = dict((actor or self.customer).headers)
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.client.post(
            "/payments/checkout", json={"order_id": str(order_id)}, headers=headers
        )

    async def checked_out(self, order_id: uuid.UUID) -> dict[str, Any]:
        response = await self.checkout(order_id)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def cancel(self, order_id: uuid.UUID, *, paid: bool, price: int = 750_000) -> None:
        await self.deliver(self.cancelled(order_id, paid=paid, price=price))

    def cancelled(self, order_id: uuid.UUID, *, paid: bool, price: int = 750_000) -> OrderCancelled:
        return OrderCancelled(
            order_id=order_id,
            customer_id=self.customer.id,
            provider_id=self.provider.id,
            price=price,
            currency="NGN",
            paid=paid,
            reason="changed my mind",
            cancelled_by="customer",
            cancelled_at=now(),
        )

    async def sandbox_call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Paystack's API on the sandbox, as someone with the secret key (e.g. the dashboard)."""
        async with httpx.AsyncClient(base_url=self.sandbox.base_url, timeout=10) as http:
            headers = {"Authorization": f"Bearer {self.sandbox.secret_key}"}
            return await http.request(method, path, headers=headers, **kw)

    async def payment(self, reference: str) -> Payment:
        async with self.sessionmaker() as session:
            found = (
                await session.exec(select(Payment).where(Payment.reference == reference))
            ).one()
            return found

    async def status(self, reference: str) -> str:
        response = await self.client.get(f"/payments/{reference}", headers=self.customer.headers)
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        return status

    async def events(self, event_type: str, **match: Any) -> list[dict[str, Any]]:
        """The `data` of every event of this type payments recorded (optionally matching)."""
        async with self.sessionmaker() as session:
            rows = (
                await session.exec(
                    select(OutboxMessage)
                    .where(OutboxMessage.event_type == event_type)
                    .order_by(col(OutboxMessage.id))
                )
            ).all()
        found = [dict(r.envelope["data"]) for r in rows]
        return [d for d in found if all(str(d.get(k)) == str(v) for k, v in match.items())]

    async def follow_up(self, rounds: int = 1) -> int:
        handled = 0
        for _ in range(rounds):
            handled += await follow_up_once(self.deps)
        return handled

    async def settled(
        self, condition: Callable[[], Any], *, within: float = 10.0, what: str = "condition"
    ) -> None:
        """Run the worker's follow-ups until `condition()` holds (or fail after `within`)."""

        async def check() -> Any:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if not result:
                await self.follow_up()
            return result

        await eventually(check, within=within, what=what)
