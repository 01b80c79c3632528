"""Request and response bodies of the payments API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from krika_common.schemas import Input

PublicStatus = Literal["pending", "succeeded", "failed", "refunded"]


class CheckoutIn(Input):
    order_id: uuid.UUID


class CheckoutOut(BaseModel):
    reference: str = Field(description="Ours; also Paystack's transaction reference")
    authorization_url: str = Field(description="Paystack's checkout page: send the customer here")
    access_code: str = Field(description="For Paystack's inline (popup) checkout")
    amount: int = Field(description="Minor units (kobo for NGN)")
    currency: str
    order_id: uuid.UUID


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reference: str
    order_id: uuid.UUID
    status: PublicStatus
    amount: int = Field(description="Minor units (kobo for NGN)")
    currency: str
    paid_at: datetime | None
    created_at: datetime


class BankOut(BaseModel):
    code: str
    name: str


class PayoutAccountIn(Input):
    bank_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{2,20}$")]
    account_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")] = Field(
        description="The 10-digit NUBAN"
    )


class PayoutAccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    bank_code: str
    bank_name: str
    account_number_last4: str
    account_name: str = Field(description="As the bank knows the account holder")
    currency: str
    created_at: datetime


class PayoutOut(BaseModel):
    """A withdrawal on its way to a bank (admin view)."""

    model_config = ConfigDict(from_attributes=True)

    withdrawal_id: uuid.UUID
    provider_id: uuid.UUID
    amount: int
    currency: str
    status: str
    transfer_code: str | None
    failure_reason: str | None
    attempts: int
    created_at: datetime
    finished_at: datetime | None
