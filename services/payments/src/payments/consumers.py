"""Payments' event handlers (through the inbox).

Events in: identity.user_registered (the payer's e-mail address, which Paystack needs),
orders.order_placed (a payable), orders.order_cancelled (no more checkouts; with `paid: true`,
one refund of the payment that paid it), ledger.withdrawal_requested (a payout).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Envelope,
    InboxHandlers,
    OrderCancelled,
    OrderPlaced,
    UserRegistered,
    WithdrawalRequested,
)
from payments import payouts, service


def inbox_handlers() -> InboxHandlers:
    handlers = InboxHandlers()

    @handlers.on(UserRegistered, consumer="payments.payers")
    async def user_registered(session: AsyncSession, envelope: Envelope) -> None:
        await service.payer_registered(session, UserRegistered.from_envelope(envelope))

    @handlers.on(OrderPlaced, consumer="payments.payables")
    async def order_placed(session: AsyncSession, envelope: Envelope) -> None:
        await service.order_placed(session, OrderPlaced.from_envelope(envelope))

    @handlers.on(OrderCancelled, consumer="payments.refunds")
    async def order_cancelled(session: AsyncSession, envelope: Envelope) -> None:
        await service.order_cancelled(session, OrderCancelled.from_envelope(envelope))

    @handlers.on(WithdrawalRequested, consumer="payments.payouts")
    async def withdrawal_requested(session: AsyncSession, envelope: Envelope) -> None:
        await payouts.withdrawal_requested(session, WithdrawalRequested.from_envelope(envelope))

    return handlers
