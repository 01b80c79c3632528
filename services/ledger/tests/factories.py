"""Plain helpers: the events ledger books, as their producers send them, and the wallet API
driven as a frontend would."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    EventData,
    KycApproved,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OutboxMessage,
    PaymentSucceeded,
    PayoutAccountAdded,
    PayoutFailed,
    PayoutSucceeded,
    RefundSucceeded,
    UserRegistered,
)
from ledger import service
from ledger.flows import Ledger
from ledger.models import Account, AccountKind
from ledger.schemas import InvariantsOut

Mint = Callable[..., str]
Deliver = Callable[..., Awaitable[None]]
NGN = "NGN"


def now() -> datetime:
    return datetime.now(UTC)


class Actor:
    def __init__(self, mint: Mint, *roles: str) -> None:
        self.id = uuid.uuid4()
        self.headers = {"Authorization": f"Bearer {mint(self.id, roles)}"}


@dataclass
class Order:
    """An order between `customer_id` and `provider_id`, and the events of its life."""

    customer_id: uuid.UUID
    provider_id: uuid.UUID
    price: int
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    reference: str = field(default_factory=lambda: "krk-" + uuid.uuid4().hex[:24])

    def placed(self) -> OrderPlaced:
        return OrderPlaced(
            order_id=self.id,
            service_id=uuid.uuid4(),
            package_id=uuid.uuid4(),
            customer_id=self.customer_id,
            provider_id=self.provider_id,
            title="Logo",
            price=self.price,
            currency=NGN,
            placed_at=now(),
        )

    def paid(self, reference: str | None = None) -> PaymentSucceeded:
        return PaymentSucceeded(
            payment_id=uuid.uuid4(),
            order_id=self.id,
            customer_id=self.customer_id,
            reference=reference or self.reference,
            amount=self.price,
            currency=NGN,
            paid_at=now(),
        )

    def completed(self) -> OrderCompleted:
        return OrderCompleted(
            order_id=self.id,
            service_id=uuid.uuid4(),
            package_id=uuid.uuid4(),
            customer_id=self.customer_id,
            provider_id=self.provider_id,
            price=self.price,
            currency=NGN,
            completed_at=now(),
        )

    def cancelled(self, paid: bool = True) -> OrderCancelled:
        return OrderCancelled(
            order_id=self.id,
            customer_id=self.customer_id,
            provider_id=self.provider_id,
            price=self.price,
            currency=NGN,
            paid=paid,
            reason=None,
            cancelled_by="customer",
            cancelled_at=now(),
        )

    def refunded(
        self, refund_id: uuid.UUID | None = None, reference: str | None = None
    ) -> RefundSucceeded:
        return RefundSucceeded(
            refund_id=refund_id or uuid.uuid5(self.id, reference or self.reference),
            order_id=self.id,
            customer_id=self.customer_id,
            reference=reference or self.reference,
            amount=self.price,
            currency=NGN,
            refunded_at=now(),
        )


def payout(
    withdrawal_id: uuid.UUID, provider_id: uuid.UUID, amount: int, ok: bool = True
) -> EventData:
    if ok:
        return PayoutSucceeded(
            withdrawal_id=withdrawal_id,
            provider_id=provider_id,
            amount=amount,
            currency=NGN,
            transfer_code="TRF_test",
            paid_at=now(),
        )
    return PayoutFailed(
        withdrawal_id=withdrawal_id,
        provider_id=provider_id,
        amount=amount,
        currency=NGN,
        reason="transfer failed",
        failed_at=now(),
    )


class Books:
    """The ledger under test: events in, the API and the accounts out."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        deliver: Deliver,
        sessionmaker: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        customer: Actor,
        provider: Actor,
        admin: Actor,
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.sessionmaker = sessionmaker
        self.ledger = ledger
        self.customer = customer
        self.provider = provider
        self.admin = admin

    def order(self, price: int = 1_000_000) -> Order:
        return Order(self.customer.id, self.provider.id, price)

    async def ready_provider(self, provider: Actor | None = None) -> None:
        """KYC approved and a payout account: the provider may withdraw."""
        who = (provider or self.provider).id
        await self.deliver(
            UserRegistered(user_id=who, email="p@example.com", full_name="P", roles=["provider"]),
            KycApproved(
                submission_id=uuid.uuid4(), user_id=who, decided_by=uuid.uuid4(), decided_at=now()
            ),
            PayoutAccountAdded(
                payout_account_id=uuid.uuid4(),
                provider_id=who,
                bank_code="058",
                account_number_last4="6789",
                account_name="P",
                currency=NGN,
                added_at=now(),
            ),
        )

    async def earned(self, price: int = 1_000_000) -> Order:
        """An order placed, paid and completed: the provider is credited."""
        order = self.order(price)
        await self.deliver(order.placed(), order.paid(), order.completed())
        return order

    async def wallet(self, actor: Actor | None = None) -> dict[str, Any]:
        response = await self.client.get("/wallet", headers=(actor or self.provider).headers)
        assert response.status_code == 200, response.text
        [line] = [b for b in response.json()["balances"] if b["currency"] == NGN]
        return dict(line)

    async def withdraw(
        self, amount: int, *, key: str | None = None, actor: Actor | None = None
    ) -> httpx.Response:
        headers = dict((actor or self.provider).headers)
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        return await self.client.post(
            "/wallet/withdrawals", json={"amount": amount, "currency": NGN}, headers=headers
        )

    async def balance(self, kind: AccountKind, owner: uuid.UUID | None = None) -> int:
        """Credits minus debits of an account (pending included), from its postings."""
        async with self.sessionmaker() as session:
            page = await service.accounts(
                session, kind=kind, owner_id=owner, cursor=None, limit=100
            )
        return sum(a.balance for a in page.items if a.currency == NGN)

    async def accounts(self) -> list[Account]:
        async with self.sessionmaker() as session:
            return list((await session.exec(select(Account).order_by(col(Account.id)))).all())

    async def invariants(self) -> InvariantsOut:
        async with self.sessionmaker() as session:
            return await service.invariants(session)

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        async with self.sessionmaker() as session:
            rows = (
                await session.exec(
                    select(OutboxMessage)
                    .where(OutboxMessage.event_type == event_type)
                    .order_by(col(OutboxMessage.id))
                )
            ).all()
        return [dict(r.envelope["data"]) for r in rows]
