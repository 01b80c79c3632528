"""chat's errors: one status and one stable `error` code each (REST bodies and socket acks)."""

from __future__ import annotations

from krika_common.errors import Conflict, NotFound, ServiceError, Unprocessable


class ConversationNotFound(NotFound):
    code = "conversation_not_found"
    message = "No such conversation"


class MessageNotFound(NotFound):
    code = "message_not_found"
    message = "No such message in this conversation"


class OrderConversationNotReady(Conflict):
    code = "order_not_ready"
    message = (
        "This order's conversation does not exist yet (it was placed a moment ago, or it "
        "does not exist); retry shortly"
    )

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "2"})


class UnknownParticipant(Unprocessable):
    code = "unknown_participant"
    message = "A participant is not a known user"


class InvalidParticipants(Unprocessable):
    code = "invalid_participants"
    message = "The participants are not valid for this conversation"


class TooManyParticipants(Unprocessable):
    code = "too_many_participants"
    message = "Too many participants"


class MessageTooLong(Unprocessable):
    code = "message_too_long"
    message = "The message body is too long"


class EmptyMessage(Unprocessable):
    code = "empty_message"
    message = "A message needs a body or an attachment"


class InvalidAttachment(Unprocessable):
    code = "invalid_attachment"
    message = "An attachment is unknown, not from this conversation or already sent"


class TooManyAttachments(Unprocessable):
    code = "too_many_attachments"
    message = "Too many attachments on one message"


class ClientIdReused(Conflict):
    code = "client_id_reused"
    message = "This client_id was already used for a different message"


class SocketRateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    message = "Too many events; slow down"


class UnknownEvent(ServiceError):
    status = 400
    code = "unknown_event"
    message = "Unknown event"


class InvalidPayload(ServiceError):
    status = 400
    code = "invalid_payload"
    message = "The event's payload is not valid"
