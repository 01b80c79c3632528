"""Event payloads shared between services, by producing context. Fields of a version are fixed."""

from __future__ import annotations

import uuid
from datetime import datetime

from krika_common.events.envelope import EventData

# --- identity ---------------------------------------------------------------------------------


class UserRegistered(EventData):
    event_type = "identity.user_registered"
    event_version = 1

    user_id: uuid.UUID
    email: str
    full_name: str
    roles: list[str]


class _OneTimeLinkRequested(EventData):
    """Notify e-mails the user a link carrying `token` (single use, valid until `expires_at`)."""

    user_id: uuid.UUID
    email: str
    full_name: str
    token: str
    expires_at: datetime


class EmailVerificationRequested(_OneTimeLinkRequested):
    event_type = "identity.email_verification_requested"
    event_version = 1


class PasswordResetRequested(_OneTimeLinkRequested):
    event_type = "identity.password_reset_requested"
    event_version = 1


class UserSuspended(EventData):
    event_type = "identity.user_suspended"
    event_version = 1

    user_id: uuid.UUID
    reason: str | None
    suspended_at: datetime
