"""What each business event books (ARCHITECTURE §6), and parking of events that cannot apply yet.

- payments.payment_succeeded: `payment_captured:{reference}`, clearing Dr / order escrow Cr;
  a second payment of one order: `duplicate_payment:{reference}`, clearing Dr / customer refund
  payable Cr (payments gives it back).
- orders.order_completed: `order_released:{order}`, escrow Dr / provider available Cr (net) /
  commission Cr.
- orders.order_cancelled with `paid`: `order_refunded:{order}`, escrow Dr / customer refund
  payable Cr.
- payments.refund_succeeded: `refund_paid:{refund}`, refund payable Dr / clearing Cr.
- POST /wallet/withdrawals: `withdrawal_reserved:{id}`, pending: available Dr / clearing Cr.
- payments.payout_succeeded / payout_failed: `withdrawal_posted:{id}` / `withdrawal_voided:{id}`,
  the reservation posted / released.

Events arrive in any order. One whose money is not there yet (a completion before its payment,
a refund before the cancellation that owes it, a payout of an unknown withdrawal) raises
`NotYet`: `handle` parks it (`parked_events`, a metric, an admin list) and it is tried again
right after the next entry on the same order or withdrawal, and by the worker with backoff.
A replayed event books nothing: every entry's key is unique.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import (
    Envelope,
    KycApproved,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    PaymentSucceeded,
    PayoutAccountAdded,
    PayoutAccountRemoved,
    PayoutFailed,
    PayoutSucceeded,
    ProviderCredited,
    RefundSucceeded,
    UserRegistered,
    record_event,
)
from ledger.config import Settings
from ledger.journal import Journal, Leg, Overdraft, Ref
from ledger.models import (
    Account,
    AccountKind,
    EntryKind,
    JournalEntry,
    LedgerOrder,
    ParkedEvent,
    Phase,
    Posting,
    Provider,
    Withdrawal,
    WithdrawalStatus,
)

log = logging.getLogger(__name__)

PARKED = Counter("krika_ledger_events_parked_total", "Events parked: they could not apply yet")
UNPARKED = Counter("krika_ledger_events_unparked_total", "Parked events applied later")


class NotYet(Exception):
    """The event's money is not in the ledger yet; `subject` is what it waits on."""

    def __init__(self, subject: uuid.UUID, reason: str) -> None:
        super().__init__(reason)
        self.subject = str(subject)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the flows need besides a session; one per process."""

    settings: Settings
    journal: Journal


def commission_of(price: int, bps: int) -> int:
    """price * bps / 10000, rounded half up to the minor unit (integers only)."""
    return (price * bps + 5_000) // 10_000


# --- bookings -------------------------------------------------------------------------------


async def payment_captured(
    session: AsyncSession, ledger: Ledger, event: PaymentSucceeded, event_id: uuid.UUID | None
) -> uuid.UUID:
    journal = ledger.journal
    clearing = await journal.account(session, AccountKind.clearing, None, event.currency)
    escrow = await journal.account(session, AccountKind.escrow, event.order_id, event.currency)
    # The escrow's row serialises the payments of one order (is this one the first?).
    await _lock_account(session, escrow.id)
    first = (
        await session.exec(
            select(JournalEntry.key).where(
                JournalEntry.order_id == event.order_id,
                JournalEntry.kind == EntryKind.payment_captured,
            )
        )
    ).first()
    if first is None or first == f"payment_captured:{event.reference}":
        await journal.post(
            session,
            key=f"payment_captured:{event.reference}",
            kind=EntryKind.payment_captured,
            phase=Phase.posted,
            currency=event.currency,
            legs=[Leg(clearing, event.amount), Leg(escrow, -event.amount)],
            order_id=event.order_id,
            reference=event.reference,
            event_id=event_id,
        )
    else:
        # The order was paid already: payments gives this one back; until then it is owed.
        owed = await journal.account(
            session, AccountKind.refund_payable, event.customer_id, event.currency
        )
        await journal.post(
            session,
            key=f"duplicate_payment:{event.reference}",
            kind=EntryKind.duplicate_payment,
            phase=Phase.posted,
            currency=event.currency,
            legs=[Leg(clearing, event.amount), Leg(owed, -event.amount)],
            order_id=event.order_id,
            reference=event.reference,
            event_id=event_id,
        )
    return event.order_id


async def _lock_account(session: AsyncSession, account_id: int) -> None:
    await session.exec(select(Account.id).where(Account.id == account_id).with_for_update())


async def order_released(
    session: AsyncSession, ledger: Ledger, event: OrderCompleted, event_id: uuid.UUID | None
) -> uuid.UUID:
    journal = ledger.journal
    commission = commission_of(event.price, ledger.settings.commission_bps)
    escrow = await journal.account(session, AccountKind.escrow, event.order_id, event.currency)
    available = await journal.account(
        session, AccountKind.available, event.provider_id, event.currency
    )
    legs = [Leg(escrow, event.price)]
    if event.price > commission:  # a commission of the whole price leaves the provider nothing
        legs.append(Leg(available, -(event.price - commission)))
    if commission:
        platform = await journal.account(session, AccountKind.commission, None, event.currency)
        legs.append(Leg(platform, -commission))
    booked = await _post_or_wait(
        session,
        ledger,
        event.order_id,
        "the order's payment is not in escrow yet",
        key=f"order_released:{event.order_id}",
        kind=EntryKind.order_released,
        phase=Phase.posted,
        currency=event.currency,
        legs=legs,
        order_id=event.order_id,
        event_id=event_id,
    )
    if booked is not None:  # told once: a replay, or a release booked already, says nothing
        await record_event(
            session,
            ProviderCredited(
                order_id=event.order_id,
                provider_id=event.provider_id,
                amount=event.price - commission,
                commission=commission,
                currency=event.currency,
                credited_at=utcnow(),
            ),
            producer="ledger",
        )
    return event.order_id


async def order_refunded(
    session: AsyncSession, ledger: Ledger, event: OrderCancelled, event_id: uuid.UUID | None
) -> uuid.UUID | None:
    if not event.paid:
        return None
    journal = ledger.journal
    escrow = await journal.account(session, AccountKind.escrow, event.order_id, event.currency)
    owed = await journal.account(
        session, AccountKind.refund_payable, event.customer_id, event.currency
    )
    await _post_or_wait(
        session,
        ledger,
        event.order_id,
        "the order's payment is not in escrow yet",
        key=f"order_refunded:{event.order_id}",
        kind=EntryKind.order_refunded,
        phase=Phase.posted,
        currency=event.currency,
        legs=[Leg(escrow, event.price), Leg(owed, -event.price)],
        order_id=event.order_id,
        event_id=event_id,
    )
    return event.order_id


async def refund_paid(
    session: AsyncSession, ledger: Ledger, event: RefundSucceeded, event_id: uuid.UUID | None
) -> uuid.UUID:
    key = f"refund_paid:{event.refund_id}"
    if await session.scalar(select(JournalEntry.id).where(JournalEntry.key == key)) is not None:
        return event.order_id  # booked already
    journal = ledger.journal
    owed = await journal.account(
        session, AccountKind.refund_payable, event.customer_id, event.currency
    )
    clearing = await journal.account(session, AccountKind.clearing, None, event.currency)
    # A refund pays out what its own order owes (its paid cancellation, a second payment of it,
    # less its refunds already paid), never what another order owes the same customer: their
    # refund payable is one account, and spending another order's share would leave that
    # order's refund parked with nothing left to wake it. The account's lock serialises the
    # customer's refunds while the order's share is counted.
    await _lock_account(session, owed.id)
    share = await session.scalar(
        select(
            func.coalesce(
                func.sum(
                    case(
                        (
                            col(JournalEntry.kind) == EntryKind.refund_paid,
                            -col(JournalEntry.amount),
                        ),
                        else_=col(JournalEntry.amount),
                    )
                ),
                0,
            )
        ).where(
            JournalEntry.order_id == event.order_id,
            col(JournalEntry.kind).in_(
                [EntryKind.order_refunded, EntryKind.duplicate_payment, EntryKind.refund_paid]
            ),
        )
    )
    if int(share or 0) < event.amount:
        raise NotYet(event.order_id, "the refund is not owed yet (its cancellation is not booked)")
    await _post_or_wait(
        session,
        ledger,
        event.order_id,
        "the refund is not owed to the customer yet (its cancellation is not booked)",
        key=key,
        kind=EntryKind.refund_paid,
        phase=Phase.posted,
        currency=event.currency,
        legs=[Leg(owed, event.amount), Leg(clearing, -event.amount)],
        order_id=event.order_id,
        reference=event.reference,
        event_id=event_id,
    )
    return event.order_id


async def _post_or_wait(
    session: AsyncSession, ledger: Ledger, subject: uuid.UUID, reason: str, **entry: Any
) -> int | None:
    """Post the entry (its id; None when it was booked already), or park: NotYet."""
    try:
        async with session.begin_nested():
            return await ledger.journal.post(session, **entry)
    except Overdraft as exc:
        raise NotYet(subject, reason) from exc


async def reserve_legs(
    session: AsyncSession, withdrawal_id: uuid.UUID
) -> tuple[int, list[Leg]] | None:
    """The reservation entry of a withdrawal and its (pending) legs."""
    rows = (
        await session.exec(
            select(JournalEntry.id, Posting.account_id, Posting.amount, Account.guarded)
            .join(Posting, col(Posting.entry_id) == col(JournalEntry.id))
            .join(Account, col(Account.id) == col(Posting.account_id))
            .where(JournalEntry.key == f"withdrawal_reserved:{withdrawal_id}")
        )
    ).all()
    if not rows:
        return None
    entry_id = rows[0][0]
    assert entry_id is not None
    return entry_id, [
        Leg(Ref(account_id, guarded), amount, True) for _, account_id, amount, guarded in rows
    ]


async def payout_settled(
    session: AsyncSession,
    ledger: Ledger,
    event: PayoutSucceeded | PayoutFailed,
    event_id: uuid.UUID | None,
) -> uuid.UUID:
    """Post the reservation (the money left) or void it (the money is available again); once:
    its `pending_id` is unique, so a post after a void (or the reverse) books nothing."""
    withdrawal = (
        await session.exec(
            select(Withdrawal)
            .where(Withdrawal.id == event.withdrawal_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    reserved = await reserve_legs(session, event.withdrawal_id)
    if withdrawal is None or reserved is None:
        raise NotYet(event.withdrawal_id, "no such withdrawal booked yet")
    reserve_id, legs = reserved
    released = [Leg(leg.account, -leg.amount, True) for leg in legs]
    succeeded = isinstance(event, PayoutSucceeded)
    if succeeded:
        kind, phase = EntryKind.withdrawal_posted, Phase.post_pending
        legs = released + [Leg(leg.account, leg.amount) for leg in legs]
    else:
        kind, phase, legs = EntryKind.withdrawal_voided, Phase.void_pending, released
    booked = await ledger.journal.post(
        session,
        key=f"{kind}:{event.withdrawal_id}",
        kind=kind,
        phase=phase,
        currency=withdrawal.currency,
        legs=legs,
        pending_id=reserve_id,
        withdrawal_id=event.withdrawal_id,
        event_id=event_id,
    )
    if booked is not None and withdrawal.status == WithdrawalStatus.pending:
        withdrawal.status = WithdrawalStatus.succeeded if succeeded else WithdrawalStatus.failed
        withdrawal.finished_at = utcnow()
        if isinstance(event, PayoutFailed):
            withdrawal.failure_reason = event.reason[:500]
    elif booked is None:
        log.warning(
            "withdrawal %s: %s after it was settled: nothing booked", event.withdrawal_id, kind
        )
    return event.withdrawal_id


# --- read models --------------------------------------------------------------------------------


async def order_placed(session: AsyncSession, event: OrderPlaced) -> None:
    await session.exec(
        insert(LedgerOrder)
        .values(
            order_id=event.order_id,
            customer_id=event.customer_id,
            provider_id=event.provider_id,
            price=event.price,
            currency=event.currency,
            placed_at=event.placed_at,
        )
        .on_conflict_do_nothing()
    )


async def _provider(session: AsyncSession, user_id: uuid.UUID) -> Provider:
    await session.exec(insert(Provider).values(user_id=user_id).on_conflict_do_nothing())
    return (
        await session.exec(
            select(Provider)
            .where(Provider.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


async def kyc_approved(session: AsyncSession, event: KycApproved) -> None:
    provider = await _provider(session, event.user_id)
    provider.kyc_approved_at = provider.kyc_approved_at or event.decided_at


async def payout_account_changed(
    session: AsyncSession, event: PayoutAccountAdded | PayoutAccountRemoved
) -> None:
    provider = await _provider(session, event.provider_id)
    at = event.added_at if isinstance(event, PayoutAccountAdded) else event.removed_at
    if provider.payout_account_changed_at is not None and at < provider.payout_account_changed_at:
        return  # an older event arriving late
    if isinstance(event, PayoutAccountAdded):
        provider.payout_account_id = event.payout_account_id
    elif provider.payout_account_id == event.payout_account_id:
        provider.payout_account_id = None
    provider.payout_account_changed_at = at


async def wallet_opened(session: AsyncSession, ledger: Ledger, event: UserRegistered) -> None:
    """A wallet for the platform currency: the provider's available balance, and the
    customer's refund payable (accounts are also opened on first use)."""
    currency = ledger.settings.currency
    if "provider" in event.roles:
        await ledger.journal.account(session, AccountKind.available, event.user_id, currency)
    await ledger.journal.account(session, AccountKind.refund_payable, event.user_id, currency)


# --- dispatch and parking ---------------------------------------------------------------------

Booking = Callable[[AsyncSession, Ledger, Any, uuid.UUID | None], Awaitable[uuid.UUID | None]]

BOOKINGS: dict[str, tuple[type[Any], Booking]] = {
    PaymentSucceeded.event_type: (PaymentSucceeded, payment_captured),
    OrderCompleted.event_type: (OrderCompleted, order_released),
    OrderCancelled.event_type: (OrderCancelled, order_refunded),
    RefundSucceeded.event_type: (RefundSucceeded, refund_paid),
    PayoutSucceeded.event_type: (PayoutSucceeded, payout_settled),
    PayoutFailed.event_type: (PayoutFailed, payout_settled),
}


async def book(session: AsyncSession, ledger: Ledger, envelope: Envelope) -> None:
    """Book an event, or park it when it cannot apply yet; after a booking, what was parked on
    the same order or withdrawal is tried again at once."""
    model, booking = BOOKINGS[envelope.type]
    try:
        subject = await booking(session, ledger, model.from_envelope(envelope), envelope.id)
    except NotYet as exc:
        await park(session, envelope, exc)
        return
    if subject is not None:
        await retry_parked(session, ledger, str(subject))


async def park(session: AsyncSession, envelope: Envelope, exc: NotYet) -> None:
    now = utcnow()
    await session.exec(
        insert(ParkedEvent)
        .values(
            event_id=envelope.id,
            event_type=envelope.type,
            subject=exc.subject,
            envelope=envelope.model_dump(mode="json"),
            reason=exc.reason,
            attempts=0,
            parked_at=now,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing()
    )
    PARKED.inc()
    log.info("parked %s %s: %s", envelope.type, envelope.id, exc.reason)


async def retry_parked(
    session: AsyncSession, ledger: Ledger, subject: str | None, *, limit: int = 100
) -> int:
    """Apply what was parked (on `subject`, or everything due when None) and can apply now;
    the rest waits longer. Repeats while something applies (one unparked event can make room
    for another). How many applied."""
    applied_total = 0
    while True:
        stmt = select(ParkedEvent).where(col(ParkedEvent.resolved_at).is_(None))
        if subject is None:
            stmt = stmt.where(col(ParkedEvent.next_attempt_at) <= utcnow())
        else:
            stmt = stmt.where(ParkedEvent.subject == subject)
        parked = (
            await session.exec(
                stmt.order_by(col(ParkedEvent.parked_at))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        applied = 0
        for row in parked:
            envelope = Envelope.model_validate(row.envelope)
            model, booking = BOOKINGS[envelope.type]
            try:
                async with session.begin_nested():
                    await booking(session, ledger, model.from_envelope(envelope), envelope.id)
            except NotYet as exc:
                row.attempts += 1
                row.reason = exc.reason
                row.next_attempt_at = utcnow() + timedelta(
                    seconds=min(
                        ledger.settings.parked_retry_max,
                        ledger.settings.parked_retry_base * 2 ** min(row.attempts, 20),
                    )
                )
                continue
            row.resolved_at = utcnow()
            applied += 1
            UNPARKED.inc()
        applied_total += applied
        if not applied:
            return applied_total
