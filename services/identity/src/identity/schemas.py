"""Request and response bodies of the identity API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from identity.models import Role


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _lower(value: str) -> str:
    return value.lower()


class RegisterIn(Strict):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=128)
    full_name: str = Field(min_length=1, max_length=200)
    role: Literal["customer", "provider"]

    _email = field_validator("email")(_lower)


class LoginIn(Strict):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=128)

    _email = field_validator("email")(_lower)


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class VerifyEmailIn(Strict):
    token: str = Field(min_length=1, max_length=200)


class ForgotPasswordIn(Strict):
    email: EmailStr = Field(max_length=320)

    _email = field_validator("email")(_lower)


class ResetPasswordIn(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=128)


class ChangePasswordIn(Strict):
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=1, max_length=128)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    roles: list[Role]
    status: str
    email_verified: bool
    created_at: datetime


class AdminUserOut(UserOut):
    suspended_at: datetime | None
    suspension_reason: str | None


class UpdateMeIn(Strict):
    full_name: str = Field(min_length=1, max_length=200)


class SetRolesIn(Strict):
    roles: list[Role] = Field(min_length=1, max_length=3)


class SuspendIn(Strict):
    reason: str | None = Field(default=None, max_length=500)
