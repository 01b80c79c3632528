"""Request and response bodies of the wallet and ledger API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from krika_common.schemas import Input

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class BalanceOut(BaseModel):
    currency: str
    available: int = Field(description="Yours to withdraw (minor units)")
    reserved: int = Field(description="In withdrawals on their way to your bank")
    in_escrow: int = Field(description="Paid for your active orders, released on completion")
    lifetime_earned: int = Field(description="Net of commission, ever credited to you")
    refund_payable: int = Field(description="Owed back to you as a customer")


class WalletOut(BaseModel):
    balances: list[BalanceOut]


class TransactionOut(BaseModel):
    id: int
    kind: str = Field(
        description="earning | withdrawal | withdrawal_returned | refund_owed | refund_paid"
    )
    amount: int = Field(description="Signed, from your point of view (minor units)")
    currency: str
    order_id: uuid.UUID | None
    withdrawal_id: uuid.UUID | None
    created_at: datetime


class WithdrawalIn(Input):
    amount: int = Field(gt=0, le=10**13, description="Minor units")
    currency: Currency


class WithdrawalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    amount: int
    currency: str
    created_at: datetime
    finished_at: datetime | None


class AccountOut(BaseModel):
    id: int
    name: str
    kind: str
    owner_id: uuid.UUID | None
    currency: str
    guarded: bool
    debits_pending: int
    debits_posted: int
    credits_posted: int
    balance: int = Field(description="Credits minus debits (posted and pending)")


class TrialLine(BaseModel):
    kind: str
    currency: str
    accounts: int
    debits: int
    credits: int
    balance: int = Field(description="Debits minus credits, pending included")


class TrialBalanceOut(BaseModel):
    lines: list[TrialLine]
    totals: dict[str, int] = Field(description="Per currency: the sum of every posting (zero)")


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class InvariantsOut(BaseModel):
    ok: bool
    checks: list[CheckOut]


class ParkedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: uuid.UUID
    event_type: str
    subject: str
    reason: str
    attempts: int
    parked_at: datetime
    next_attempt_at: datetime
    resolved_at: datetime | None
