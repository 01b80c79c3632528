"""Catalog tables: categories, services with packages and media, reviews, and two read models
fed by other services' events (providers from identity, completed orders from orders).

`services` carries denormalised search columns kept by the use cases (`starting_price`,
`currency`, `fastest_delivery_days`, the rating) and by PostgreSQL itself: the generated
columns `listed` (published and the provider not suspended), `search_document` (weighted
tsvector), `title_document` (title and tags only, for ranking) and `search_text` (unaccented
lower-case title and tags, whose words a trigger keeps in `catalog_search_words` for typo
matching), the search indexes and functions exist only in the migrations (catalog.search
queries them in SQL); the ORM never writes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Numeric,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db


class ServiceStatus(StrEnum):
    draft = "draft"
    published = "published"
    paused = "paused"
    archived = "archived"


class KycStatus(StrEnum):
    none = "none"
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class Category(SQLModel, table=True):
    __tablename__ = "categories"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=100)
    parent_id: uuid.UUID | None = Field(
        default=None, foreign_key="categories.id", index=True, ondelete="RESTRICT"
    )
    created_at: datetime = utc_field()


class Provider(SQLModel, table=True):
    """What catalog knows of a provider, from identity's events (never identity's database).

    `kyc_at`: the time of the KYC event the status comes from (submitted_at / decided_at), so
    an older event arriving late never moves it back; approved is final. `access_version`:
    identity's `token_version` of the latest suspension change applied (-1: none yet).
    """

    __tablename__ = "providers"

    user_id: uuid.UUID = Field(primary_key=True)
    kyc_status: str = Field(default=KycStatus.none, max_length=20)
    kyc_at: datetime | None = Field(default=None, sa_column=_ts())
    suspended: bool = Field(default=False)
    access_version: int = Field(default=-1)
    updated_at: datetime = utc_field()


class Service(SQLModel, table=True):
    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("rating_count >= 0", name="rating_count_positive"),
        CheckConstraint("starting_price > 0", name="starting_price_positive"),
        Index("ix_services_provider", "provider_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    provider_id: uuid.UUID
    category_id: uuid.UUID = Field(foreign_key="categories.id", ondelete="RESTRICT")
    title: str = Field(max_length=120)
    description: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(sa_column=Column(ARRAY(String(30)), nullable=False))
    faq: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    status: str = Field(default=ServiceStatus.draft, max_length=20)
    # The provider's suspension, copied here by the event handler so search filters on one row.
    provider_suspended: bool = Field(default=False)
    # Cheapest package (its price and currency) and the fastest delivery of any package.
    starting_price: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    fastest_delivery_days: int = Field(sa_column=Column(SmallInteger, nullable=False))
    rating_sum: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    rating_count: int = Field(default=0)
    # sum / count rounded to 2 decimals; 0 while there are no reviews (answered as null).
    rating_average: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(3, 2), nullable=False)
    )
    # Bumped on every change; events carry it so consumers keep the newest.
    revision: int = Field(default=1)
    created_at: datetime = utc_field()
    updated_at: datetime = utc_field()
    published_at: datetime | None = Field(default=None, sa_column=_ts())


class Package(SQLModel, table=True):
    __tablename__ = "packages"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: uuid.UUID = Field(foreign_key="services.id", index=True, ondelete="CASCADE")
    position: int = Field(sa_column=Column(SmallInteger, nullable=False))
    name: str = Field(max_length=60)
    description: str = Field(max_length=1000)
    price: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    delivery_days: int
    revisions: int


class Media(SQLModel, table=True):
    __tablename__ = "media"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: uuid.UUID = Field(foreign_key="services.id", index=True, ondelete="CASCADE")
    key: str = Field(max_length=200)
    content_type: str = Field(max_length=100)
    size: int
    created_at: datetime = utc_field()


class CompletedOrder(SQLModel, table=True):
    """An order orders reported completed: its customer may review its service, once."""

    __tablename__ = "completed_orders"

    order_id: uuid.UUID = Field(primary_key=True)
    service_id: uuid.UUID = Field(index=True)
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    completed_at: datetime = Field(sa_column=_ts(nullable=False))


class Review(SQLModel, table=True):
    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_service_newest", "service_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    service_id: uuid.UUID = Field(foreign_key="services.id", ondelete="CASCADE")
    order_id: uuid.UUID = Field(unique=True)
    customer_id: uuid.UUID
    provider_id: uuid.UUID
    rating: int = Field(sa_column=Column(SmallInteger, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    reply: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    replied_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime = utc_field()
