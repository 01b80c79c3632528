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
    """Notify e-mails the user a link carrying the token (single use, valid until `expires_at`).

    The token is sealed for notify (`krika_common.events.sealed`): `unseal(sealed_token, key)`
    with notify's link key. Version 1 carried it in clear; it never had a consumer.
    """

    user_id: uuid.UUID
    email: str
    full_name: str
    sealed_token: str
    expires_at: datetime


class EmailVerificationRequested(_OneTimeLinkRequested):
    event_type = "identity.email_verification_requested"
    event_version = 2


class PasswordResetRequested(_OneTimeLinkRequested):
    event_type = "identity.password_reset_requested"
    event_version = 2


class UserSuspended(EventData):
    """Every access token of the user below `token_version` is refused (krika_common.access)."""

    event_type = "identity.user_suspended"
    event_version = 1

    user_id: uuid.UUID
    reason: str | None
    suspended_at: datetime
    # Added later in v1 (a compatible addition): 0 from producers that predate it.
    token_version: int = 0


class UserReinstated(EventData):
    """The suspension is lifted; tokens from before it (below `token_version`) stay refused."""

    event_type = "identity.user_reinstated"
    event_version = 1

    user_id: uuid.UUID
    reinstated_at: datetime
    token_version: int


class UserRolesChanged(EventData):
    """The user's roles are now `roles`; tokens below `token_version` carry the old ones."""

    event_type = "identity.user_roles_changed"
    event_version = 1

    user_id: uuid.UUID
    roles: list[str]
    changed_at: datetime
    token_version: int
    suspended: bool = False
