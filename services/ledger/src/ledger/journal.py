"""The posting engine: accounts by (kind, owner, currency), and `Journal.post`, which books one
balanced entry — once per key — and moves guarded balances with one conditional UPDATE each.

`post` is one round trip: the database function `ledger_post` (created by the migration) does,
in the caller's transaction:
1. INSERT the entry ... ON CONFLICT DO NOTHING: its `key` was booked already (a replayed
   event), or its `pending_id` was posted or voided already: nothing happens, `None` is
   answered.
2. For every guarded account the entry touches, in ascending id order (so two entries never
   wait on each other's locks): `UPDATE accounts SET <totals + deltas> WHERE id = :id AND
   debits_pending + debits_posted (after) <= credits_posted (after)`. No row means the entry
   would overdraw it: the function raises SQLSTATE KL001, `Overdraft` here, and the caller's
   savepoint or transaction rolls everything back. The CHECK constraint on accounts says the
   same thing a second time.
3. INSERT its postings, in one statement.

Hot accounts (clearing, fees, commission) are never locked or updated: they only get postings.
This is the hot path: one statement compiled once, arrays for the legs (bench/README.md has
the figures of the ORM version it replaced).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import BigInteger, Boolean, DateTime, String, Uuid, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from ledger.models import GUARDED, Account, AccountKind, Phase

ENTRIES = Counter("krika_ledger_entries_total", "Journal entries booked", ["kind"])
OVERDRAFTS = Counter(
    "krika_ledger_overdrafts_total", "Entries refused because they would overdraw an account"
)

# ledger_post (the migration): one entry in one round trip; SQLSTATE KL001 is an overdraft.
_POST = text(
    "SELECT ledger_post(:key, :kind, :phase, :currency, :pending_id, :order_id, "
    ":withdrawal_id, :reference, :event_id, :at, :accounts, :amounts, :pending, :guarded)"
).bindparams(
    bindparam("accounts", type_=ARRAY(BigInteger)),
    bindparam("amounts", type_=ARRAY(BigInteger)),
    bindparam("pending", type_=ARRAY(Boolean)),
    bindparam("guarded", type_=ARRAY(Boolean)),
    bindparam("pending_id", type_=BigInteger),
    bindparam("order_id", type_=Uuid),
    bindparam("withdrawal_id", type_=Uuid),
    bindparam("event_id", type_=Uuid),
    bindparam("reference", type_=String),
    bindparam("at", type_=DateTime(timezone=True)),
)
OVERDRAWN = "KL001"
# session.info: the accounts this session inserted (never cached: they may be rolled back).
_CREATED = "ledger.accounts_created"


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
    """Account ids are cached per process (accounts are never deleted), at most `cache_size`
    of them, least recently used first out — but only ids of rows that existed before the
    current transaction: a row this session inserted may still be rolled back."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._ids: OrderedDict[tuple[str, uuid.UUID | None, str], Ref] = OrderedDict()
        self._size = cache_size

    async def account(
        self, session: AsyncSession, kind: AccountKind, owner_id: uuid.UUID | None, currency: str
    ) -> Ref:
        key = (str(kind), owner_id, currency)
        found = self._ids.get(key)
        if found is not None:
            self._ids.move_to_end(key)
            return found
        guarded = kind in GUARDED
        created_here: set[tuple[str, uuid.UUID | None, str]] = session.info.setdefault(
            _CREATED, set()
        )
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
            created_here.add(key)
            return Ref(created, guarded)
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
        if key not in created_here:
            self._ids[key] = ref
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
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
        try:
            entry_id = await session.scalar(
                _POST,
                {
                    "key": key,
                    "kind": str(kind),
                    "phase": str(phase),
                    "currency": currency,
                    "pending_id": pending_id,
                    "order_id": order_id,
                    "withdrawal_id": withdrawal_id,
                    "reference": reference,
                    "event_id": event_id,
                    "at": at or utcnow(),
                    "accounts": [leg.account.id for leg in legs],
                    "amounts": [leg.amount for leg in legs],
                    "pending": [leg.pending for leg in legs],
                    "guarded": [leg.account.guarded for leg in legs],
                },
            )
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == OVERDRAWN:
                OVERDRAFTS.inc()
                raise Overdraft(int(getattr(exc.orig, "detail", 0) or 0)) from exc
            raise
        if entry_id is None:
            return None
        ENTRIES.labels(kind).inc()
        return int(entry_id)
