"""Orders' business errors (status + stable code)."""

from __future__ import annotations

from krika_common.errors import BadRequest, Conflict, Forbidden, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"
    message = "No such order"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    message = "The order's state or your part in it does not allow this"


class UnknownService(BadRequest):
    status = 422
    code = "unknown_service"
    message = "No such service"


class ServiceUnavailable(Conflict):
    code = "service_unavailable"
    message = "The service is not taking orders (not published, paused or archived)"


class UnknownPackage(BadRequest):
    status = 422
    code = "unknown_package"
    message = "The package does not belong to this service"


class OwnService(Forbidden):
    code = "own_service"
    message = "A provider cannot order their own service"


class UnknownAttachment(BadRequest):
    status = 422
    code = "unknown_attachment"
    message = (
        "An attachment id is not a file you uploaded to this order, or another delivery uses it"
    )


class TooManyAttachments(Conflict):
    code = "too_many_attachments"
    message = "The order holds as many attachments as allowed"


class OrderClosed(Conflict):
    code = "order_closed"
    message = "The order is completed or cancelled: nothing can be added to it"
