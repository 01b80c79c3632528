"""Ledger's event handlers (through the inbox).

Bookings (ledger.flows): payments.payment_succeeded, orders.order_completed,
orders.order_cancelled (paid), payments.refund_succeeded, payments.payout_succeeded /
payout_failed. Read models: orders.order_placed (whose escrow is whose),
identity.user_registered (wallets), identity.kyc_approved and payments.payout_account_added /
payout_account_removed (what a withdrawal needs).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Envelope,
    InboxHandlers,
    KycApproved,
    OrderPlaced,
    PayoutAccountAdded,
    PayoutAccountRemoved,
    UserRegistered,
)
from ledger import flows
from ledger.flows import Ledger


def inbox_handlers(ledger: Ledger) -> InboxHandlers:
    handlers = InboxHandlers()

    async def book(session: AsyncSession, envelope: Envelope) -> None:
        await flows.book(session, ledger, envelope)

    for model, _ in flows.BOOKINGS.values():
        handlers.on(model, consumer="ledger.bookings")(book)

    @handlers.on(OrderPlaced, consumer="ledger.orders")
    async def order_placed(session: AsyncSession, envelope: Envelope) -> None:
        await flows.order_placed(session, OrderPlaced.from_envelope(envelope))

    @handlers.on(UserRegistered, consumer="ledger.wallets")
    async def user_registered(session: AsyncSession, envelope: Envelope) -> None:
        await flows.wallet_opened(session, ledger, UserRegistered.from_envelope(envelope))

    @handlers.on(KycApproved, consumer="ledger.providers")
    async def kyc_approved(session: AsyncSession, envelope: Envelope) -> None:
        await flows.kyc_approved(session, KycApproved.from_envelope(envelope))

    @handlers.on(PayoutAccountAdded, consumer="ledger.providers")
    async def payout_account_added(session: AsyncSession, envelope: Envelope) -> None:
        await flows.payout_account_changed(session, PayoutAccountAdded.from_envelope(envelope))

    @handlers.on(PayoutAccountRemoved, consumer="ledger.providers")
    async def payout_account_removed(session: AsyncSession, envelope: Envelope) -> None:
        await flows.payout_account_changed(session, PayoutAccountRemoved.from_envelope(envelope))

    return handlers
