"""Request and response bodies of notify's API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NotificationOut(BaseModel):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class UnreadOut(BaseModel):
    count: int


class ReadAllOut(BaseModel):
    updated: int


class PreferencesOut(BaseModel):
    email: dict[str, bool]
    in_app: dict[str, bool]
    locked: list[str] = Field(description="E-mail kinds that cannot be switched off (security)")


class PreferencesIn(BaseModel):
    """The kinds to change; the others keep their choice."""

    model_config = ConfigDict(extra="forbid")

    email: dict[str, bool] = Field(default_factory=dict, max_length=100)
    in_app: dict[str, bool] = Field(default_factory=dict, max_length=100)


class DeliveryOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    to_address: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    message_id: str | None
