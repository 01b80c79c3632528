"""Ledger tables: accounts, journal entries and postings (append-only), withdrawals, parked
events, and read models fed by events (orders, providers' KYC and payout accounts).

Postings carry a signed amount: positive is a debit, negative a credit; every entry's postings
sum to zero. `pending` postings belong to two-phase entries (a withdrawal's reservation and
its reversal when the reservation is posted or voided).

Guarded accounts (escrow, provider available, customer refund payable) keep TigerBeetle-like
running balances (`debits_pending`, `debits_posted`, `credits_posted`), changed in the posting's
transaction by one conditional UPDATE that refuses to let debits exceed credits (and a CHECK
behind it). Hot system accounts (clearing, fees, commission) keep no running balance: they take
postings without a row lock; their balance is the sum of their postings.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db
from krika_common.idempotency import IdempotencyKey  # noqa: F401 - a table of this db


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


def _money(default: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=False, server_default=text("0") if default else None)


class AccountKind(StrEnum):
    clearing = "clearing"  # paystack:clearing — money held at Paystack (hot)
    fees = "fees"  # paystack:fees (hot)
    commission = "commission"  # platform:commission (hot)
    escrow = "escrow"  # order:{id}:escrow (guarded)
    available = "available"  # provider:{id}:available (guarded)
    refund_payable = "refund_payable"  # customer:{id}:refund_payable (guarded)


GUARDED = frozenset({AccountKind.escrow, AccountKind.available, AccountKind.refund_payable})

# The chart of accounts' names (ARCHITECTURE §6).
ACCOUNT_NAMES = {
    AccountKind.clearing: "paystack:clearing",
    AccountKind.fees: "paystack:fees",
    AccountKind.commission: "platform:commission",
    AccountKind.escrow: "order:{owner}:escrow",
    AccountKind.available: "provider:{owner}:available",
    AccountKind.refund_payable: "customer:{owner}:refund_payable",
}


class EntryKind(StrEnum):
    payment_captured = "payment_captured"  # clearing -> order escrow
    duplicate_payment = "duplicate_payment"  # clearing -> customer refund payable
    order_released = "order_released"  # escrow -> provider available + commission
    order_refunded = "order_refunded"  # escrow -> customer refund payable
    refund_paid = "refund_paid"  # refund payable -> clearing
    withdrawal_reserved = "withdrawal_reserved"  # pending: provider available -> clearing
    withdrawal_posted = "withdrawal_posted"  # the reservation, posted
    withdrawal_voided = "withdrawal_voided"  # the reservation, released


class Phase(StrEnum):
    posted = "posted"
    pending = "pending"
    post_pending = "post_pending"
    void_pending = "void_pending"


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("kind", "owner_id", "currency", name="uq_accounts_kind_owner_currency"),
        # System accounts have no owner: one per kind and currency.
        Index(
            "ux_accounts_system",
            "kind",
            "currency",
            unique=True,
            postgresql_where=text("owner_id IS NULL"),
        ),
        Index("ix_accounts_owner", "owner_id"),
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_posted >= 0",
            name="totals_not_negative",
        ),
        # TigerBeetle's debits_must_not_exceed_credits, for guarded accounts.
        CheckConstraint(
            "NOT guarded OR debits_pending + debits_posted <= credits_posted",
            name="debits_must_not_exceed_credits",
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    kind: str = Field(max_length=20)
    owner_id: uuid.UUID | None = Field(default=None)
    currency: str = Field(max_length=3)
    guarded: bool = Field(sa_column=Column(Boolean, nullable=False))
    debits_pending: int = Field(default=0, sa_column=_money(default=True))
    debits_posted: int = Field(default=0, sa_column=_money(default=True))
    credits_posted: int = Field(default=0, sa_column=_money(default=True))
    created_at: datetime = utc_field()

    @property
    def name(self) -> str:
        return ACCOUNT_NAMES[AccountKind(self.kind)].format(owner=self.owner_id)


class JournalEntry(SQLModel, table=True):
    """One business event's effect. `key` (unique) is derived from the event, so it is booked
    once; `pending_id` (unique) lets a pending entry be posted or voided once."""

    __tablename__ = "journal_entries"
    __table_args__ = (
        Index(
            "ix_journal_entries_order", "order_id", postgresql_where=text("order_id IS NOT NULL")
        ),
        Index(
            "ix_journal_entries_withdrawal",
            "withdrawal_id",
            postgresql_where=text("withdrawal_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=30)
    phase: str = Field(max_length=20)
    pending_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("journal_entries.id"), unique=True, nullable=True),
    )
    currency: str = Field(max_length=3)
    amount: int = Field(sa_column=_money())
    order_id: uuid.UUID | None = Field(default=None)
    withdrawal_id: uuid.UUID | None = Field(default=None)
    reference: str | None = Field(default=None, max_length=200)
    event_id: uuid.UUID | None = Field(default=None)
    created_at: datetime = utc_field()


class Posting(SQLModel, table=True):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_postings_account", "account_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    entry_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("journal_entries.id"), nullable=False, index=True)
    )
    account_id: int = Field(sa_column=Column(BigInteger, ForeignKey("accounts.id"), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    pending: bool = Field(sa_column=Column(Boolean, nullable=False))
    currency: str = Field(max_length=3)
    created_at: datetime = utc_field()


class WithdrawalStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class Withdrawal(SQLModel, table=True):
    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_withdrawals_provider", "provider_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    provider_id: uuid.UUID
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    status: str = Field(default=WithdrawalStatus.pending, max_length=20)
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = utc_field()
    finished_at: datetime | None = Field(default=None, sa_column=_ts())


class LedgerOrder(SQLModel, table=True):
    """An order as orders.order_placed announced it: whose escrow is whose."""

    __tablename__ = "ledger_orders"

    order_id: uuid.UUID = Field(primary_key=True)
    customer_id: uuid.UUID
    provider_id: uuid.UUID = Field(index=True)
    price: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    placed_at: datetime = Field(sa_column=_ts(nullable=False))


class Provider(SQLModel, table=True):
    """What a withdrawal needs to know of a provider: KYC approved, a payout account."""

    __tablename__ = "ledger_providers"

    user_id: uuid.UUID = Field(primary_key=True)
    kyc_approved_at: datetime | None = Field(default=None, sa_column=_ts())
    payout_account_id: uuid.UUID | None = Field(default=None)
    # The time of the payout-account event applied last (an older one arriving late is ignored).
    payout_account_changed_at: datetime | None = Field(default=None, sa_column=_ts())


class ParkedEvent(SQLModel, table=True):
    """An event that could not apply yet (its money is not there yet: a completion before its
    payment, a payout before its withdrawal). Tried again, never dropped, visible to admins."""

    __tablename__ = "parked_events"
    __table_args__ = (
        Index("ix_parked_events_subject", "subject", postgresql_where=text("resolved_at IS NULL")),
        Index(
            "ix_parked_events_due", "next_attempt_at", postgresql_where=text("resolved_at IS NULL")
        ),
    )

    event_id: uuid.UUID = Field(primary_key=True)
    event_type: str = Field(max_length=200)
    # What it waits on: an order or withdrawal id.
    subject: str = Field(max_length=100)
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = Field(default=0)
    parked_at: datetime = utc_field()
    next_attempt_at: datetime = Field(sa_column=_ts(nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
