"""Ledger use cases for the API: wallets, their audit trail, withdrawals, and the admin views
(accounts, trial balance, parked events, invariants). They flush, never commit."""

from __future__ import annotations

import uuid
from collections import defaultdict

from prometheus_client import Gauge
from sqlalchemy import Subquery, case, func
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import WithdrawalRequested, record_event
from krika_common.pagination import Page, keyset_page
from ledger.errors import (
    AmountBelowMinimum,
    InsufficientFunds,
    KycRequired,
    PayoutAccountRequired,
    UnsupportedCurrency,
    WithdrawalNotFound,
)
from ledger.flows import Ledger
from ledger.journal import Leg, Overdraft
from ledger.models import (
    GUARDED,
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
)
from ledger.schemas import (
    AccountOut,
    BalanceOut,
    CheckOut,
    InvariantsOut,
    TransactionOut,
    TrialBalanceOut,
    TrialLine,
    WalletOut,
    WithdrawalIn,
)

PRODUCER = "ledger"

INVARIANT_OK = Gauge(
    "krika_ledger_invariant_ok", "1 when the ledger invariant holds at the last check", ["check"]
)
PARKED_OPEN = Gauge("krika_ledger_parked_events", "Events parked and not applied yet")

# What a line of a wallet's audit trail is, by the entry that made it.
LINE_KINDS = {
    EntryKind.order_released: "earning",
    EntryKind.withdrawal_reserved: "withdrawal",
    EntryKind.withdrawal_voided: "withdrawal_returned",
    EntryKind.order_refunded: "refund_owed",
    EntryKind.duplicate_payment: "refund_owed",
    EntryKind.refund_paid: "refund_paid",
}


# --- wallet ---------------------------------------------------------------------------------


async def wallet(session: AsyncSession, ledger: Ledger, user_id: uuid.UUID) -> WalletOut:
    balances: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(
            ("available", "reserved", "in_escrow", "lifetime_earned", "refund_payable"), 0
        )
    )
    balances[ledger.settings.currency]
    owned = await session.exec(
        select(Account).where(
            Account.owner_id == user_id,
            col(Account.kind).in_([AccountKind.available, AccountKind.refund_payable]),
        )
    )
    for account in owned:
        line = balances[account.currency]
        if account.kind == AccountKind.available:
            line["available"] = (
                account.credits_posted - account.debits_posted - account.debits_pending
            )
            line["reserved"] = account.debits_pending
            line["lifetime_earned"] = account.credits_posted
        else:
            line["refund_payable"] = account.credits_posted - account.debits_posted
    escrow = await session.exec(
        select(
            Account.currency,
            func.sum(col(Account.credits_posted) - col(Account.debits_posted)),
        )
        .join(LedgerOrder, col(LedgerOrder.order_id) == col(Account.owner_id))
        .where(LedgerOrder.provider_id == user_id, Account.kind == AccountKind.escrow)
        .group_by(col(Account.currency))
    )
    for currency, amount in escrow:
        balances[currency]["in_escrow"] = int(amount or 0)
    return WalletOut(balances=[BalanceOut(currency=c, **v) for c, v in sorted(balances.items())])


async def transactions(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[TransactionOut]:
    """Every movement of the user's own accounts, newest first, signed from their side (a
    credit to them is positive). A withdrawal shows once, when reserved; a failed one gives the
    money back with a `withdrawal_returned` line."""
    lines = (
        core_select(
            col(Posting.id).label("id"),
            col(JournalEntry.kind).label("kind"),
            (-col(Posting.amount)).label("amount"),
            col(Posting.currency).label("currency"),
            col(JournalEntry.order_id).label("order_id"),
            col(JournalEntry.withdrawal_id).label("withdrawal_id"),
            col(Posting.created_at).label("created_at"),
        )
        .join(JournalEntry, col(JournalEntry.id) == col(Posting.entry_id))
        .join(Account, col(Account.id) == col(Posting.account_id))
        .where(
            col(Account.owner_id) == user_id,
            col(Account.kind).in_([AccountKind.available, AccountKind.refund_payable]),
            col(JournalEntry.phase) != Phase.post_pending,
        )
        .subquery()
    )
    stmt = core_select(lines)
    page = await keyset_page(session, stmt, [lines.c.id], cursor=cursor, limit=limit)
    return Page(
        items=[
            TransactionOut(
                id=row.id,
                kind=LINE_KINDS.get(EntryKind(row.kind), row.kind),
                amount=row.amount,
                currency=row.currency,
                order_id=row.order_id,
                withdrawal_id=row.withdrawal_id,
                created_at=row.created_at,
            )
            for row in page.items
        ],
        next_cursor=page.next_cursor,
    )


# --- withdrawals ----------------------------------------------------------------------------


async def request_withdrawal(
    session: AsyncSession, ledger: Ledger, provider_id: uuid.UUID, body: WithdrawalIn
) -> Withdrawal:
    """Reserve the amount (a pending entry: available -> clearing) and ask payments to send it;
    more than available is refused atomically (nothing reserved)."""
    settings = ledger.settings
    if body.currency != settings.currency:
        raise UnsupportedCurrency(f"The platform currency is {settings.currency}")
    if body.amount < settings.min_withdrawal:
        raise AmountBelowMinimum(f"The smallest withdrawal is {settings.min_withdrawal}")
    provider = await session.get(Provider, provider_id)
    if provider is None or provider.kyc_approved_at is None:
        raise KycRequired
    if provider.payout_account_id is None:
        raise PayoutAccountRequired
    journal = ledger.journal
    available = await journal.account(session, AccountKind.available, provider_id, body.currency)
    clearing = await journal.account(session, AccountKind.clearing, None, body.currency)
    withdrawal = Withdrawal(provider_id=provider_id, amount=body.amount, currency=body.currency)
    session.add(withdrawal)
    await session.flush()
    try:
        async with session.begin_nested():
            await journal.post(
                session,
                key=f"withdrawal_reserved:{withdrawal.id}",
                kind=EntryKind.withdrawal_reserved,
                phase=Phase.pending,
                currency=body.currency,
                legs=[
                    Leg(available, body.amount, pending=True),
                    Leg(clearing, -body.amount, pending=True),
                ],
                withdrawal_id=withdrawal.id,
            )
    except Overdraft as exc:
        raise InsufficientFunds from exc
    await record_event(
        session,
        WithdrawalRequested(
            withdrawal_id=withdrawal.id,
            provider_id=provider_id,
            amount=body.amount,
            currency=body.currency,
            requested_at=withdrawal.created_at,
        ),
        producer=PRODUCER,
    )
    return withdrawal


async def withdrawals(
    session: AsyncSession, provider_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[Withdrawal]:
    stmt = select(Withdrawal).where(Withdrawal.provider_id == provider_id)
    return await keyset_page(
        session,
        stmt,
        [col(Withdrawal.created_at), col(Withdrawal.id)],
        cursor=cursor,
        limit=limit,
    )


async def get_withdrawal(
    session: AsyncSession, withdrawal_id: uuid.UUID, user_id: uuid.UUID, admin: bool
) -> Withdrawal:
    found = await session.get(Withdrawal, withdrawal_id)
    if found is None or (found.provider_id != user_id and not admin):
        raise WithdrawalNotFound
    return found


# --- admin ----------------------------------------------------------------------------------


def posting_totals() -> Subquery:
    """Per account, its postings' totals as a guarded account keeps them: `pending` (the net of
    its pending postings), `debits` and `credits` (posted)."""
    pending, amount = col(Posting.pending), col(Posting.amount)
    return (
        select(
            col(Posting.account_id).label("account_id"),
            func.sum(case((pending, amount), else_=0)).label("pending"),
            func.sum(case(((~pending) & (amount > 0), amount), else_=0)).label("debits"),
            func.sum(case(((~pending) & (amount < 0), -amount), else_=0)).label("credits"),
        )
        .group_by(col(Posting.account_id))
        .subquery()
    )


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id or 0,
        name=account.name,
        kind=account.kind,
        owner_id=account.owner_id,
        currency=account.currency,
        guarded=account.guarded,
        debits_pending=account.debits_pending,
        debits_posted=account.debits_posted,
        credits_posted=account.credits_posted,
        balance=account.credits_posted - account.debits_posted - account.debits_pending,
    )


async def accounts(
    session: AsyncSession,
    *,
    kind: AccountKind | None,
    owner_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[AccountOut]:
    """Guarded accounts show their running balances; a hot account's are summed from its
    postings here."""
    stmt = select(Account)
    if kind is not None:
        stmt = stmt.where(Account.kind == kind)
    if owner_id is not None:
        stmt = stmt.where(Account.owner_id == owner_id)
    page = await keyset_page(session, stmt, [col(Account.id)], cursor=cursor, limit=limit)
    hot = [a.id for a in page.items if not a.guarded and a.id is not None]
    sums: dict[int, tuple[int, int, int]] = {}
    if hot:
        totals = posting_totals()
        rows = await session.exec(
            select(totals.c.account_id, totals.c.pending, totals.c.debits, totals.c.credits).where(
                totals.c.account_id.in_(hot)
            )
        )
        sums = {a: (int(p or 0), int(d or 0), int(c or 0)) for a, p, d, c in rows}
    items = []
    for account in page.items:
        if not account.guarded and account.id in sums:
            pending, debits, credits = sums[account.id]
            account = account.model_copy(
                update={
                    "debits_pending": pending,
                    "debits_posted": debits,
                    "credits_posted": credits,
                }
            )
        items.append(account_out(account))
    return Page(items=items, next_cursor=page.next_cursor)


async def trial_balance(session: AsyncSession) -> TrialBalanceOut:
    rows = await session.exec(  # type: ignore[call-overload]
        core_select(
            col(Account.kind),
            col(Account.currency),
            func.count(func.distinct(col(Account.id))),
            func.coalesce(
                func.sum(case((col(Posting.amount) > 0, col(Posting.amount)), else_=0)), 0
            ),
            func.coalesce(
                func.sum(case((col(Posting.amount) < 0, -col(Posting.amount)), else_=0)), 0
            ),
        )
        .join(Posting, col(Posting.account_id) == col(Account.id))
        .group_by(col(Account.kind), col(Account.currency))
        .order_by(col(Account.currency), col(Account.kind))
    )
    lines = [
        TrialLine(
            kind=kind,
            currency=currency,
            accounts=int(count),
            debits=int(debits),
            credits=int(credits),
            balance=int(debits) - int(credits),
        )
        for kind, currency, count, debits, credits in rows
    ]
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.balance
    return TrialBalanceOut(lines=lines, totals=dict(totals))


async def parked(
    session: AsyncSession, *, include_resolved: bool, cursor: str | None, limit: int
) -> Page[ParkedEvent]:
    stmt = select(ParkedEvent)
    if not include_resolved:
        stmt = stmt.where(col(ParkedEvent.resolved_at).is_(None))
    return await keyset_page(
        session,
        stmt,
        [col(ParkedEvent.parked_at), col(ParkedEvent.event_id)],
        cursor=cursor,
        limit=limit,
    )


# --- invariants -----------------------------------------------------------------------------


async def invariants(session: AsyncSession) -> InvariantsOut:
    """The checks of ARCHITECTURE §6, each in SQL over the whole ledger."""
    checks: list[CheckOut] = []

    unbalanced = (
        await session.exec(
            select(col(Posting.entry_id))
            .group_by(col(Posting.entry_id), col(Posting.pending))
            .having(func.sum(col(Posting.amount)) != 0)
            .limit(10)
        )
    ).all()
    checks.append(
        CheckOut(
            name="every_entry_balances",
            ok=not unbalanced,
            detail=f"unbalanced entries: {list(unbalanced)}" if unbalanced else "",
        )
    )

    totals = (
        await session.exec(
            select(col(Posting.currency), func.sum(col(Posting.amount))).group_by(
                col(Posting.currency)
            )
        )
    ).all()
    off = {c: int(t) for c, t in totals if t}
    checks.append(
        CheckOut(
            name="postings_sum_to_zero",
            ok=not off,
            detail=f"per currency: {off}" if off else "",
        )
    )

    sums = posting_totals()
    drifted = (
        await session.exec(
            select(col(Account.id))
            .outerjoin(sums, sums.c.account_id == col(Account.id))
            .where(
                col(Account.guarded),
                (col(Account.debits_pending) != func.coalesce(sums.c.pending, 0))
                | (col(Account.debits_posted) != func.coalesce(sums.c.debits, 0))
                | (col(Account.credits_posted) != func.coalesce(sums.c.credits, 0)),
            )
            .limit(10)
        )
    ).all()
    checks.append(
        CheckOut(
            name="cached_balances_match_postings",
            ok=not drifted,
            detail=f"accounts: {list(drifted)}" if drifted else "",
        )
    )

    settled = select(col(JournalEntry.order_id)).where(
        col(JournalEntry.kind).in_([EntryKind.order_released, EntryKind.order_refunded])
    )
    open_escrows = (
        await session.exec(
            select(col(Account.owner_id))
            .where(
                Account.kind == AccountKind.escrow,
                col(Account.owner_id).in_(settled),
                col(Account.credits_posted) - col(Account.debits_posted) != 0,
            )
            .limit(10)
        )
    ).all()
    checks.append(
        CheckOut(
            name="settled_orders_escrow_zero",
            ok=not open_escrows,
            detail=f"orders: {[str(o) for o in open_escrows]}" if open_escrows else "",
        )
    )

    negative = (
        await session.exec(
            select(col(Account.id))
            .where(
                col(Account.kind).in_(list(GUARDED)),
                col(Account.credits_posted)
                - col(Account.debits_posted)
                - col(Account.debits_pending)
                < 0,
            )
            .limit(10)
        )
    ).all()
    checks.append(
        CheckOut(
            name="no_guarded_account_negative",
            ok=not negative,
            detail=f"accounts: {list(negative)}" if negative else "",
        )
    )
    for check in checks:
        INVARIANT_OK.labels(check.name).set(1 if check.ok else 0)
    open_parked = await session.scalar(
        select(func.count()).select_from(ParkedEvent).where(col(ParkedEvent.resolved_at).is_(None))
    )
    PARKED_OPEN.set(int(open_parked or 0))
    return InvariantsOut(ok=all(c.ok for c in checks), checks=checks)
