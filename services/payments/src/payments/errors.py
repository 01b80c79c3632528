"""Payments' business errors (status + stable code)."""

from __future__ import annotations

from krika_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceError,
    ServiceUnavailable,
)


class OrderNotFound(NotFound):
    code = "order_not_found"
    message = "No such order of yours"


class OrderNotReady(Conflict):
    code = "order_not_ready"
    message = (
        "Payments has not received this order yet (it was placed a moment ago, or it does "
        "not exist); retry shortly"
    )

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class OrderAlreadyPaid(Conflict):
    code = "order_already_paid"
    message = "This order is paid already"


class OrderNotPayable(Conflict):
    code = "order_not_payable"
    message = "This order was cancelled: it cannot be paid"


class PaymentNotFound(NotFound):
    code = "payment_not_found"
    message = "No such payment of yours"


class PaystackDeclined(ServiceError):
    status = 502
    code = "payment_provider_refused"
    message = "Paystack refused the request"


class PaystackDown(ServiceUnavailable):
    code = "payment_provider_unavailable"
    message = "Paystack did not answer; retry shortly"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=5)


class InvalidSignature(ServiceError):
    status = 401
    code = "invalid_signature"
    message = "The webhook's x-paystack-signature is missing or does not match its body"


class MalformedWebhook(BadRequest):
    code = "malformed_webhook"
    message = "The webhook body is not a Paystack event (JSON with `event` and `data`)"


class UnknownBank(BadRequest):
    status = 422
    code = "unknown_bank"
    message = "No such bank code (see GET /payments/banks)"


class AccountNotResolved(BadRequest):
    status = 422
    code = "account_not_resolved"
    message = "The bank could not find this account number"


class PayoutAccountNotFound(NotFound):
    code = "payout_account_not_found"
    message = "No such payout account of yours"
