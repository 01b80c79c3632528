"""Request and response bodies of the catalog API.

`ServiceView` is a service's page as it is cached (media as storage keys); `ServiceOut` is what
is answered, with each medium's link signed at answer time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from krika_common.schemas import Input, Line

Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
]
CategoryName = Annotated[
    Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
Title = Annotated[Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)
]
Tag = Annotated[
    Line, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=30)
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Price = Annotated[int, Field(ge=1, le=10**12, description="Minor units (kobo for NGN)")]
SortOrder = Literal["relevance", "price_asc", "price_desc", "rating", "newest"]


class CategoryIn(Input):
    name: CategoryName
    slug: Slug
    parent_id: uuid.UUID | None = None


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
    parent_id: uuid.UUID | None


class PackageIn(Input):
    # PATCH: an existing package's id keeps that package (and its id); without one, a new one.
    id: uuid.UUID | None = None
    name: Annotated[Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    price: Price
    currency: Currency = "NGN"
    delivery_days: Annotated[int, Field(ge=1, le=365)]
    revisions: Annotated[int, Field(ge=0, le=20)] = 0


class FaqItem(Input):
    question: Annotated[
        Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


Packages = Annotated[list[PackageIn], Field(min_length=1, max_length=3)]
Tags = Annotated[list[Tag], Field(max_length=10)]
Faq = Annotated[list[FaqItem], Field(max_length=20)]


def _one_currency(packages: list[PackageIn] | None) -> None:
    if packages and len({p.currency for p in packages}) > 1:
        raise ValueError("all packages of a service use one currency")
    ids = [p.id for p in packages or () if p.id is not None]
    if len(ids) != len(set(ids)):
        raise ValueError("a package id appears twice")


def _unique_tags(tags: list[str] | None) -> list[str] | None:
    return None if tags is None else list(dict.fromkeys(tags))


class ServiceIn(Input):
    title: Title
    description: Description
    category_id: uuid.UUID
    tags: Tags = Field(default_factory=list)
    packages: Packages
    faq: Faq = Field(default_factory=list)

    _tags = field_validator("tags")(_unique_tags)

    @model_validator(mode="after")
    def _packages(self) -> ServiceIn:
        _one_currency(self.packages)
        return self


class ServiceUpdate(Input):
    """Only the fields sent change; `packages` replaces the whole set."""

    title: Title | None = None
    description: Description | None = None
    category_id: uuid.UUID | None = None
    tags: Tags | None = None
    packages: Packages | None = None
    faq: Faq | None = None

    _tags = field_validator("tags")(_unique_tags)

    @model_validator(mode="after")
    def _packages(self) -> ServiceUpdate:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        _one_currency(self.packages)
        return self


class PackageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    price: int
    currency: str
    delivery_days: int
    revisions: int


class MediaRef(BaseModel):
    id: uuid.UUID
    key: str


class MediaOut(BaseModel):
    id: uuid.UUID
    url: str


class FaqOut(BaseModel):
    question: str
    answer: str


class _ServiceBase(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    provider_id: uuid.UUID
    category_id: uuid.UUID
    status: str
    tags: list[str]
    packages: list[PackageOut]
    starting_price: int
    currency: str
    # null while there are no reviews; otherwise the mean rating rounded to 2 decimals.
    rating_average: float | None
    rating_count: int
    faq: list[FaqOut]
    revision: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


class ServiceView(_ServiceBase):
    """The page as cached: media by storage key, links signed when answering."""

    media: list[MediaRef]


class ServiceOut(_ServiceBase):
    media: list[MediaOut]


class ServiceSummary(BaseModel):
    """A search hit or list item."""

    id: uuid.UUID
    title: str
    provider_id: uuid.UUID
    category_id: uuid.UUID
    starting_price: int
    currency: str
    rating_average: float | None
    rating_count: int
    published_at: datetime | None


class MyServiceSummary(ServiceSummary):
    status: str
    updated_at: datetime


class ReviewIn(Input):
    order_id: uuid.UUID
    rating: Annotated[int, Field(ge=1, le=5)]
    text: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class ReplyIn(Input):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    service_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    rating: int
    text: str
    reply: str | None
    replied_at: datetime | None
    created_at: datetime


def average(rating_average: Decimal, rating_count: int) -> float | None:
    return float(rating_average) if rating_count else None
