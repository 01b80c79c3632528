"""notify's errors: one status and one stable `error` code each."""

from __future__ import annotations

from krika_common.errors import NotFound, ServiceError, Unprocessable


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    message = "No such notification"


class UnknownKind(Unprocessable):
    code = "unknown_kind"
    message = "No such kind of notification on this channel"


class PreferenceLocked(Unprocessable):
    code = "preference_locked"
    message = "Security e-mails cannot be switched off"


class UnsubscribeLinkInvalid(ServiceError):
    status = 400
    code = "unsubscribe_link_invalid"
    message = "This unsubscribe link is not valid"


class RecipientUnknown(Exception):
    """An event for a user identity has not announced yet: the event is retried later."""


class OrderUnknown(Exception):
    """An event about an order notify has not heard of yet: the event is retried later."""
