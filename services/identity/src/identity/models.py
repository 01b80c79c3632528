"""Identity tables: users, refresh tokens (hashed, in rotation families), one-time tokens."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, Index, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from krika_common.db import utc_field
from krika_common.events import InboxMessage, OutboxMessage  # noqa: F401 - tables of this db


class Role(StrEnum):
    customer = "customer"
    provider = "provider"
    admin = "admin"


class UserStatus(StrEnum):
    active = "active"
    suspended = "suspended"


class TokenPurpose(StrEnum):
    verify_email = "verify_email"
    reset_password = "reset_password"  # noqa: S105 - a purpose, not a secret


def _ts(nullable: bool = True) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Stored lower-cased; unique.
    email: str = Field(max_length=320, unique=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    roles: list[str] = Field(sa_column=Column(ARRAY(String(20)), nullable=False))
    status: str = Field(default=UserStatus.active, max_length=20, index=True)
    email_verified_at: datetime | None = Field(default=None, sa_column=_ts())
    suspended_at: datetime | None = Field(default=None, sa_column=_ts())
    suspension_reason: str | None = Field(default=None, max_length=500)
    # The `ver` claim of the user's access tokens; bumped whenever their access changes
    # (suspension, reinstatement, roles), which makes older tokens refused (krika_common.access).
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = utc_field(index=True)
    updated_at: datetime = utc_field()

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.active

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class RefreshToken(SQLModel, table=True):
    """One opaque refresh token; rotation spends it and issues the next in the same family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index(
            "ix_refresh_tokens_live_family",
            "family_id",
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    family_id: uuid.UUID
    token_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    created_at: datetime = utc_field()
    expires_at: datetime = Field(sa_column=_ts(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=_ts())
    revoked_at: datetime | None = Field(default=None, sa_column=_ts())


class OneTimeToken(SQLModel, table=True):
    """E-mail verification and password reset tokens: hashed, single use, expiring."""

    __tablename__ = "one_time_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: str = Field(max_length=20)
    token_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    created_at: datetime = utc_field()
    expires_at: datetime = Field(sa_column=_ts(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=_ts())


class KycStatus(StrEnum):
    none = "none"  # never submitted (only in answers; no row has it)
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class DocumentType(StrEnum):
    national_id = "national_id"
    passport = "passport"
    drivers_license = "drivers_license"


class KycFileKind(StrEnum):
    document_front = "document_front"
    document_back = "document_back"
    selfie = "selfie"


class KycSubmission(SQLModel, table=True):
    """A provider's identity documents and personal details, and the admin's decision.

    At most one submission per user is pending or approved (a partial unique index): a second
    one while the first is undecided, or after approval, is refused; after a rejection the
    provider submits again (a new row; the old one stays as the record).
    """

    __tablename__ = "kyc_submissions"
    __table_args__ = (
        Index(
            "uq_kyc_submissions_open_per_user",
            "user_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'approved')"),
        ),
        Index("ix_kyc_submissions_queue", "status", "submitted_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    legal_name: str = Field(max_length=200)
    date_of_birth: date
    country: str = Field(max_length=2)
    document_type: str = Field(max_length=20)
    status: str = Field(default=KycStatus.pending, max_length=20)
    reason: str | None = Field(default=None, max_length=500)
    submitted_at: datetime = utc_field()
    decided_at: datetime | None = Field(default=None, sa_column=_ts())
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")


class KycFile(SQLModel, table=True):
    """One stored file of a submission (its key in the store, never a client path)."""

    __tablename__ = "kyc_files"

    submission_id: uuid.UUID = Field(
        foreign_key="kyc_submissions.id", primary_key=True, ondelete="CASCADE"
    )
    kind: str = Field(max_length=20, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    content_type: str = Field(max_length=50)
    size: int
    sha256: str = Field(max_length=64)
