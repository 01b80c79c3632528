"""The posting engine: accounts by (kind, owner, currency), and `Journal.post`, which books one
balanced entry — once per key — and moves guarded balances with one conditional UPDATE each.

`post` in one transaction:
1. INSERT the entry ... ON CONFLICT DO NOTHING: its `key` was booked already (a replayed
   event), or its `pending_id` was posted or voided already: nothing happens, `None` is
   answered.
2. For every guarded account the entry touches, in ascending id order (so two entries never
   wait on each other's locks): `UPDATE accounts SET <totals + deltas> WHERE id = :id AND
   debits_pending + debits_posted (after) <= credits_posted (after)`. No row means the entry
   would overdraw it: `Overdraft` is raised and the caller's savepoint or transaction rolls
   everything back. The CHECK constraint on accounts says the same thing a second time.
3. INSERT its postings, in one statement.

Hot accounts (clearing, fees, commission) are never locked or updated: they only get postings.
Statements are SQLAlchemy Core (no ORM objects): this is the hot path.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from ledger.models import GUARDED, Account, AccountKind, JournalEntry, Phase, Posting

ENTRIES = Counter("krika_ledger_entries_total", "Journal entries booked", ["kind"])
OVERDRAFTS = Counter(
    "krika_ledger_overdrafts_total", "Entries refused because they would overdraw an account"
)

_ACCOUNTS = Account.__table__  # type: ignore[attr-defined]


class Overdraft(Exception):
    """The entry would make a guarded account's debits exceed its credits."""

    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} would be overdrawn")
        self.account_id = account_id


@dataclass(frozen=True, slots=True)
class Ref:
    id: int
    guarded: bool


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting: + debit, - credit; `pending` for a two-phase entry's legs."""

    account: Ref
    amount: int
    pending: bool = False


class Journal:
    """Account ids are cached per process (accounts are never deleted), but only ids read as
    committed rows: an account created in a transaction that rolls back must not be cached."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, uuid.UUID | None, str], Ref] = {}

    async def account(
        self, session: AsyncSession, kind: AccountKind, owner_id: uuid.UUID | None, currency: str
    ) -> Ref:
        key = (str(kind), owner_id, currency)
        found = self._ids.get(key)
        if found is not None:
            return found
        guarded = kind in GUARDED
        created = await session.scalar(
            insert(Account)
            .values(
                kind=kind,
                owner_id=owner_id,
                currency=currency,
                guarded=guarded,
                debits_pending=0,
                debits_posted=0,
                credits_posted=0,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(col(Account.id))
        )
        if created is not None:
            return Ref(created, guarded)  # new in this transaction: not cached yet
        owner = (
            col(Account.owner_id).is_(None)
            if owner_id is None
            else col(Account.owner_id) == owner_id
        )
        existing = await session.scalar(
            select(col(Account.id)).where(
                col(Account.kind) == kind, owner, col(Account.currency) == currency
            )
        )
        if existing is None:  # pragma: no cover - the insert conflicted, so the row exists
            raise LookupError(key)
        ref = Ref(existing, guarded)
        self._ids[key] = ref
        return ref

    async def post(
        self,
        session: AsyncSession,
        *,
        key: str,
        kind: str,
        phase: Phase,
        currency: str,
        legs: list[Leg],
        pending_id: int | None = None,
        order_id: uuid.UUID | None = None,
        withdrawal_id: uuid.UUID | None = None,
        reference: str | None = None,
        event_id: uuid.UUID | None = None,
        at: datetime | None = None,
    ) -> int | None:
        """Book the entry; its id, or None when it was booked (or its pending entry resolved)
        already. Raises Overdraft (the caller rolls back)."""
        if sum(leg.amount for leg in legs if leg.pending) or sum(
            leg.amount for leg in legs if not leg.pending
        ):
            raise ValueError(f"{key}: the legs do not balance")
        if any(leg.amount == 0 for leg in legs):
            raise ValueError(f"{key}: a leg of zero")
        now = at or utcnow()
        entry_id = await session.scalar(
            insert(JournalEntry)
            .values(
                key=key,
                kind=kind,
                phase=phase,
                pending_id=pending_id,
                currency=currency,
                amount=sum(leg.amount for leg in legs if leg.amount > 0),
                order_id=order_id,
                withdrawal_id=withdrawal_id,
                reference=reference,
                event_id=event_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(col(JournalEntry.id))
        )
        if entry_id is None:
            return None
        deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for leg in legs:
            if not leg.account.guarded:
                continue
            totals = deltas[leg.account.id]
            if leg.pending:
                totals[0] += leg.amount  # guarded accounts only hold pending debits
            elif leg.amount > 0:
                totals[1] += leg.amount
            else:
                totals[2] -= leg.amount
        c = _ACCOUNTS.c
        for account_id in sorted(deltas):
            pending, debits, credits = deltas[account_id]
            moved = await session.scalar(
                update(_ACCOUNTS)
                .where(
                    c.id == account_id,
                    c.debits_pending + pending + c.debits_posted + debits
                    <= c.credits_posted + credits,
                )
                .values(
                    debits_pending=c.debits_pending + pending,
                    debits_posted=c.debits_posted + debits,
                    credits_posted=c.credits_posted + credits,
                )
                .returning(c.id)
            )
            if moved is None:
                OVERDRAFTS.inc()
                raise Overdraft(account_id)
        await session.exec(
            insert(Posting).values(
                [
                    {
                        "entry_id": entry_id,
                        "account_id": leg.account.id,
                        "amount": leg.amount,
                        "pending": leg.pending,
                        "currency": currency,
                        "created_at": now,
                    }
                    for leg in legs
                ]
            )
        )
        ENTRIES.labels(kind).inc()
        return int(entry_id)
