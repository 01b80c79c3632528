"""Payments tables: what can be paid (fed by orders' events), payments with our references,
the raw webhooks Paystack sent, refunds, payout accounts and payouts; plus a read model of
users' e-mail addresses (Paystack needs the payer's), fed by identity's events.

Every row that waits on Paystack carries `next_check_at`: the worker claims due rows with
FOR UPDATE SKIP LOCKED and asks Paystack (verify), so a lost webhook or a lost answer is
recovered by any worker, once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Identity, Index, Text, text
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db
from krika_common.idempotency import IdempotencyKey  # noqa: F401 - a table of this db


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


def _money() -> Column[int]:
    return Column(BigInteger, nullable=False)


class PaymentStatus(StrEnum):
    # Our reference is stored; Paystack has not answered the initialization (yet).
    initializing = "initializing"
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    refunded = "refunded"


class RefundStatus(StrEnum):
    requested = "requested"  # to be sent to Paystack
    submitting = "submitting"  # sent; Paystack's answer not recorded yet
    pending = "pending"  # Paystack took it; its outcome comes by webhook (or verify)
    processed = "processed"
    failed = "failed"


class PayoutStatus(StrEnum):
    requested = "requested"  # to be sent to Paystack
    submitting = "submitting"  # sent; Paystack's answer not recorded yet
    unknown = "unknown"  # the answer was lost (timeout, 5xx): verify before anything else
    pending = "pending"
    otp = "otp"  # Paystack waits for the OTP (finalized on Paystack's dashboard)
    succeeded = "succeeded"
    failed = "failed"


class Payer(SQLModel, table=True):
    """A user's e-mail address as identity announced it (Paystack's `email` field)."""

    __tablename__ = "payers"

    user_id: uuid.UUID = Field(primary_key=True)
    email: str = Field(max_length=320)
    updated_at: datetime = utc_field()


class Payable(SQLModel, table=True):
    """An order that can be paid: its price snapshot, from orders.order_placed."""

    __tablename__ = "payables"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    order_id: uuid.UUID = Field(primary_key=True)
    customer_id: uuid.UUID = Field(index=True)
    provider_id: uuid.UUID
    title: str = Field(max_length=200)
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    # The payment that paid it (the first verified success).
    paid_by: uuid.UUID | None = Field(default=None)
    cancelled_at: datetime | None = Field(default=None, sa_column=_ts())
    placed_at: datetime = Field(sa_column=_ts(nullable=False))
    created_at: datetime = utc_field()


class Payment(SQLModel, table=True):
    """One Paystack transaction for an order, under our reference (stored before Paystack is
    called). Its status only follows what `GET /transaction/verify` says."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_payments_order", "order_id", "created_at"),
        Index(
            "ix_payments_check_due",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    reference: str = Field(max_length=100, unique=True)
    order_id: uuid.UUID = Field(foreign_key="payables.order_id")
    customer_id: uuid.UUID
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    status: str = Field(default=PaymentStatus.initializing, max_length=20)
    access_code: str | None = Field(default=None, max_length=100)
    authorization_url: str | None = Field(default=None, max_length=500)
    paystack_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # What Paystack captured, as verify said (differs from `amount` only when not believed).
    captured_amount: int | None = Field(default=None, sa_column=Column(BigInteger))
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    # When reconciliation next verifies it (None: final, or not sent to Paystack).
    next_check_at: datetime | None = Field(default=None, sa_column=_ts())
    checks: int = Field(default=0)


class WebhookEvent(SQLModel, table=True):
    """A webhook exactly as received (its signature checked first). Paystack events carry no
    id: `dedupe_key` (event, reference, status) makes a redelivery a no-op."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    dedupe_key: str = Field(max_length=300, unique=True)
    event: str = Field(max_length=100)
    reference: str | None = Field(default=None, max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = utc_field()
    processed_at: datetime | None = Field(default=None, sa_column=_ts())
    # What processing concluded (applied, ignored: why).
    outcome: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_column=_ts(nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Refund(SQLModel, table=True):
    """The refund of a payment: at most one per payment (unique), whatever is redelivered."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "ix_refunds_check_due",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    payment_id: uuid.UUID = Field(foreign_key="payments.id", unique=True)
    order_id: uuid.UUID
    customer_id: uuid.UUID
    reference: str = Field(max_length=100)  # the payment's
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    status: str = Field(default=RefundStatus.requested, max_length=20)
    paystack_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0)
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    processed_at: datetime | None = Field(default=None, sa_column=_ts())
    next_check_at: datetime | None = Field(default=None, sa_column=_ts())


class PayoutAccount(SQLModel, table=True):
    """A provider's bank account as a Paystack transfer recipient. One active per provider."""

    __tablename__ = "payout_accounts"
    __table_args__ = (
        Index(
            "ux_payout_accounts_active",
            "provider_id",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    provider_id: uuid.UUID = Field(index=True)
    bank_code: str = Field(max_length=20)
    bank_name: str = Field(max_length=200)
    account_number_last4: str = Field(max_length=4)
    account_name: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    recipient_code: str = Field(max_length=100)
    created_at: datetime = utc_field()
    removed_at: datetime | None = Field(default=None, sa_column=_ts())


class Payout(SQLModel, table=True):
    """A withdrawal sent to a provider's bank: a Paystack transfer whose reference is the
    withdrawal id. A transfer is created at most once: an unclear answer is verified."""

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "ix_payouts_check_due",
            "next_check_at",
            postgresql_where=text("next_check_at IS NOT NULL"),
        ),
    )

    withdrawal_id: uuid.UUID = Field(primary_key=True)
    provider_id: uuid.UUID = Field(index=True)
    amount: int = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    payout_account_id: uuid.UUID | None = Field(default=None, foreign_key="payout_accounts.id")
    recipient_code: str | None = Field(default=None, max_length=100)
    status: str = Field(default=PayoutStatus.requested, max_length=20)
    transfer_code: str | None = Field(default=None, max_length=100)
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0)
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    finished_at: datetime | None = Field(default=None, sa_column=_ts())
    next_check_at: datetime | None = Field(default=None, sa_column=_ts())

    @property
    def reference(self) -> str:
        return str(self.withdrawal_id)
