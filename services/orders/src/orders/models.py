"""Orders tables: orders (with their durable timer), their history, deliveries and attachments,
and a read model of catalog's services fed by catalog's events (never catalog's database).

Timers live on the order row (`timer`, `timer_due_at`): one pending at a time at most (the
unpaid expiry while pending, the auto-completion while delivered). Every transition sets or
clears it in the same transaction; the worker claims due rows with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    SmallInteger,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db
from krika_common.idempotency import IdempotencyKey  # noqa: F401 - a table of this db
from orders.states import OrderStatus

__all__ = ["OrderStatus"]


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class Timer:
    """What an order's pending timer does when it falls due."""

    expire = "expire"  # pending -> cancelled (unpaid)
    auto_complete = "auto_complete"  # delivered -> completed


class Order(SQLModel, table=True):
    """An order, with the catalog snapshot taken when it was placed (title, package, price,
    delivery days, revisions): later catalog changes never move it."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint(
            "revisions_used >= 0 AND revisions_used <= revisions_allowed", name="revisions_bound"
        ),
        Index("ix_orders_customer_newest", "customer_id", "created_at", "id"),
        Index("ix_orders_provider_newest", "provider_id", "created_at", "id"),
        Index("ix_orders_newest", "created_at", "id"),
        Index("ix_orders_timer_due", "timer_due_at", postgresql_where=text("timer IS NOT NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: uuid.UUID
    package_id: uuid.UUID
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    title: str = Field(max_length=200)
    package_name: str = Field(max_length=100)
    price: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    delivery_days: int = Field(sa_column=Column(SmallInteger, nullable=False))
    revisions_allowed: int = Field(sa_column=Column(SmallInteger, nullable=False))
    revisions_used: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False))
    requirements: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(default=OrderStatus.pending, max_length=20)
    # Money was captured for it (a cancellation then means a refund).
    paid: bool = Field(default=False)
    payment_id: uuid.UUID | None = Field(default=None)
    cancel_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    # placed + delivery_days; moved to started + delivery_days when work starts.
    due_at: datetime = Field(sa_column=_ts(nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts())
    completed_at: datetime | None = Field(default=None, sa_column=_ts())
    cancelled_at: datetime | None = Field(default=None, sa_column=_ts())
    timer: str | None = Field(default=None, max_length=20)
    timer_due_at: datetime | None = Field(default=None, sa_column=_ts())


class HistoryEntry(SQLModel, table=True):
    """One line of an order's history: a transition (the placement has no `from_status`) or a
    note about the order (a failed payment, a refund) with `from_status == to_status`."""

    __tablename__ = "order_history"
    __table_args__ = (Index("ix_order_history_order", "order_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    order_id: uuid.UUID = Field(foreign_key="orders.id", ondelete="CASCADE")
    kind: str = Field(default="transition", max_length=20)  # transition | note
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    actor_id: uuid.UUID | None = Field(default=None)
    actor_role: str = Field(max_length=20)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: datetime = utc_field()


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_order", "order_id", "number", unique=True),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="orders.id", ondelete="CASCADE")
    number: int = Field(sa_column=Column(SmallInteger, nullable=False))
    delivered_by: uuid.UUID
    message: str = Field(sa_column=Column(Text, nullable=False))
    attachment_ids: list[uuid.UUID] = Field(
        default_factory=list,
        sa_column=Column(
            ARRAY(Uuid()),
            nullable=False,
            server_default=text("'{}'::uuid[]"),
        ),
    )
    created_at: datetime = utc_field()


class Attachment(SQLModel, table=True):
    """A file uploaded to an order by one of its parties (stored before this row is written;
    `delivery_id` once a delivery uses it)."""

    __tablename__ = "attachments"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True, ondelete="CASCADE")
    uploaded_by: uuid.UUID
    key: str = Field(max_length=200)
    content_type: str = Field(max_length=100)
    size: int
    delivery_id: uuid.UUID | None = Field(default=None, foreign_key="deliveries.id")
    created_at: datetime = utc_field()


class CatalogService(SQLModel, table=True):
    """A catalog service as its latest event describes it (the highest `revision` wins, so an
    older event arriving late never moves it back). `packages`: PackageSnapshot dicts."""

    __tablename__ = "catalog_services"

    service_id: uuid.UUID = Field(primary_key=True)
    provider_id: uuid.UUID
    title: str = Field(max_length=200)
    status: str = Field(max_length=20)
    packages: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    revision: int = Field(sa_column=Column(BigInteger, nullable=False))
    changed_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = utc_field()
