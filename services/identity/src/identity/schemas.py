"""Request and response bodies of the identity API."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StringConstraints

from identity.models import DocumentType, KycFileKind, KycStatus, Role
from krika_common.schemas import Input, Line


def _fold_email(value: object) -> object:
    # NFKC first: the full-width form of ada@example.com is the same account.
    if isinstance(value, str):
        return unicodedata.normalize("NFKC", value).strip().lower()
    return value


Email = Annotated[EmailStr, BeforeValidator(_fold_email), Field(max_length=320)]
# Passwords are taken exactly as typed: no trimming, any characters but control ones.
Password = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OpaqueToken = Annotated[Line, Field(min_length=1, max_length=200)]


class RegisterIn(Input):
    email: Email
    password: Password
    full_name: Name
    role: Literal["customer", "provider"]


class LoginIn(Input):
    email: Email
    password: Password


class RefreshIn(Input):
    refresh_token: OpaqueToken


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class VerifyEmailIn(Input):
    token: OpaqueToken


class ForgotPasswordIn(Input):
    email: Email


class ResetPasswordIn(Input):
    token: OpaqueToken
    password: Password


class ChangePasswordIn(Input):
    current_password: Password
    new_password: Password


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


class UpdateMeIn(Input):
    full_name: Name


class SetRolesIn(Input):
    roles: list[Role] = Field(min_length=1, max_length=3)


class SuspendIn(Input):
    reason: Annotated[str, Field(max_length=500)] | None = None


# --- KYC --------------------------------------------------------------------------------------


class KycSubmittedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: KycStatus
    submitted_at: datetime


class KycStatusOut(BaseModel):
    """The caller's verification: `none` before a first submission; `reason` when rejected."""

    status: KycStatus
    reason: str | None = None
    submission_id: uuid.UUID | None = None
    submitted_at: datetime | None = None
    decided_at: datetime | None = None


class KycSubmissionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    status: KycStatus
    legal_name: str
    country: str
    document_type: DocumentType
    submitted_at: datetime
    reason: str | None
    decided_at: datetime | None
    decided_by: uuid.UUID | None


class KycDocumentOut(BaseModel):
    """A stored file; `url` opens it until `links_expire_at` (then ask for the submission
    again)."""

    kind: KycFileKind
    content_type: str
    size: int
    sha256: str
    url: str


class KycSubmissionOut(KycSubmissionSummary):
    date_of_birth: date
    documents: list[KycDocumentOut]
    links_expire_at: datetime


class RejectKycIn(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
