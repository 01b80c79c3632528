"""notify's tables: in-app notifications, preferences, the e-mail delivery queue, chat digests,
and read models of users (identity's events) and orders (orders' events).

A delivery keeps what its template needs (`context`), not the rendered mail: it is rendered
when sent. A one-time link's token stays sealed for notify in it (krika_common.events.sealed)
and is opened only to render, so the queue never holds a usable token.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


def _json() -> Column[Any]:
    return Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


class Recipient(SQLModel, table=True):
    """A user's address and name as identity announced them."""

    __tablename__ = "notify_users"

    id: uuid.UUID = Field(primary_key=True)
    email: str = Field(max_length=320)
    full_name: str = Field(max_length=200)
    roles: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    updated_at: datetime = utc_field()


class KnownOrder(SQLModel, table=True):
    """An order as placed (orders.order_placed): its title and parties, for messages."""

    __tablename__ = "notify_orders"

    id: uuid.UUID = Field(primary_key=True)
    title: str = Field(max_length=200)
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    service_id: uuid.UUID
    price: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)


class Notification(SQLModel, table=True):
    """An in-app notification. `key` (event, kind, user) makes an event's notification once."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user", "user_id", "created_at", "id"),
        Index(
            "ix_notifications_unread",
            "user_id",
            postgresql_where=text("read_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    user_id: uuid.UUID
    kind: str = Field(max_length=50)
    title: str = Field(max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    read_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = utc_field()


class Preference(SQLModel, table=True):
    """A user's choice for one kind on one channel (no row: the default, on)."""

    __tablename__ = "notification_preferences"

    user_id: uuid.UUID = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=10)  # "email" | "in_app"
    kind: str = Field(primary_key=True, max_length=50)
    enabled: bool
    updated_at: datetime = utc_field()


class DeliveryStatus(StrEnum):
    pending = "pending"  # to send (again) from next_attempt_at
    sent = "sent"  # the relay accepted it
    failed = "failed"  # refused for good (5xx), or out of attempts
    suppressed = "suppressed"  # switched off by the recipient before it went


class EmailDelivery(SQLModel, table=True):
    """One e-mail to send: `key` (event, kind, recipient) makes it once per event."""

    __tablename__ = "email_deliveries"
    __table_args__ = (
        Index(
            "ix_email_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_email_deliveries_user", "user_id", "created_at"),
        Index("ix_email_deliveries_status", "status", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    user_id: uuid.UUID
    to_address: str = Field(max_length=320)
    kind: str = Field(max_length=50)
    context: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    status: str = Field(default=DeliveryStatus.pending, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = utc_field()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_id: str | None = Field(default=None, max_length=300)
    created_at: datetime = utc_field()
    sent_at: datetime | None = Field(default=None, sa_column=_ts())


class ChatDigest(SQLModel, table=True):
    """Chat messages waiting to be e-mailed to a recipient who was offline: one open digest
    per (recipient, conversation), sent from `send_after` (at most one per conversation every
    NOTIFY_CHAT_DIGEST_MINUTES)."""

    __tablename__ = "chat_digests"
    __table_args__ = (
        Index(
            "ux_chat_digests_open",
            "user_id",
            "conversation_id",
            unique=True,
            postgresql_where=text("sent_at IS NULL"),
        ),
        Index("ix_chat_digests_due", "send_after", postgresql_where=text("sent_at IS NULL")),
        Index("ix_chat_digests_sent", "user_id", "conversation_id", "sent_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    order_id: uuid.UUID | None = None
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    count: int = 0
    send_after: datetime = Field(sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = utc_field()
