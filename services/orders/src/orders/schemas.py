"""Request and response bodies of the orders API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from krika_common.schemas import Input

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
AttachmentIds = Annotated[list[uuid.UUID], Field(max_length=10)]
Party = Literal["customer", "provider"]


class OrderIn(Input):
    service_id: uuid.UUID
    package_id: uuid.UUID
    requirements: Text = ""


class DeliverIn(Input):
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
    attachment_ids: AttachmentIds = Field(
        default_factory=list, description="Files uploaded first with POST /orders/{id}/attachments"
    )


class RevisionIn(Input):
    note: Note = ""


class CancelIn(Input):
    reason: Note = ""


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    service_id: uuid.UUID
    package_id: uuid.UUID
    package_name: str
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    title: str
    price: int = Field(description="Minor units (kobo for NGN)")
    currency: str
    delivery_days: int
    revisions_allowed: int
    revisions_used: int
    requirements: str
    paid: bool
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime = Field(
        description="When delivery is due: placed + delivery_days, moved to started + "
        "delivery_days when the provider starts the work"
    )
    paid_at: datetime | None
    started_at: datetime | None
    delivered_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None


class HistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None = Field(description="null for the placement")
    to_status: str
    actor_id: uuid.UUID | None
    actor_role: str = Field(description="customer | provider | admin | system")
    note: str | None
    at: datetime
    kind: str = Field(description="transition, or note (e.g. a failed payment): no status change")


class AttachmentOut(BaseModel):
    id: uuid.UUID
    url: str
    content_type: str
    size: int


class DeliveryOut(BaseModel):
    id: uuid.UUID
    number: int
    delivered_by: uuid.UUID
    message: str
    attachments: list[AttachmentOut]
    created_at: datetime


class UploadedOut(BaseModel):
    id: uuid.UUID
    url: str
