"""Paystack's error answers: `{"status": false, "message", "meta": {"nextStep"}, "type", "code"}`.

Messages come from Paystack's error catalogue (shared/reference/paystack/api-errors.json);
its `solution` column is what Paystack sends as `meta.nextStep`.
"""

from __future__ import annotations

from typing import Any

# message -> nextStep, for the catalogue's messages the sandbox uses.
NEXT_STEPS = {
    "Duplicate Transaction Reference": (
        "Ensure that you use a unique reference for every transaction. Alternatively, leave "
        "the reference field blank and we'll auto-generate one for you"
    ),
    "Invalid character in transaction reference": (
        "Ensure that you aren't using any characters that aren't alphanumeric or contained in "
        '"-,., =" in your transaction reference'
    ),
    "Email is not allowed to be empty": "Pass the email to the transaction initialize API",
    "Invalid Email Address Passed": (
        'Ensure that the email follows the format: "username@example.com"'
    ),
    "Invalid Amount Sent": "Provide a valid amount based on the recommended minimum",
    "You must specify a valid amount": "Ensure the amount is an integer greater than 0",
    "Invalid amount passed.": (
        "You should ensure the length of amount is greater than zero and not a string value"
    ),
    "Currency not supported by merchant": (
        "Ensure you're passing the currency code for a currency enabled on your integration"
    ),
    "Transaction amount limit exceeded": (
        "You'll need to re-initialize the transaction with lower amount"
    ),
    "Transaction reference not found": (
        "Ensure that you're passing the reference of a transaction that exists on this integration"
    ),
    "Transaction not found": (
        "Ensure that you've copied the transaction reference correctly. Also confirm that the "
        "API keys you're using, belong to the business you're searching the transaction "
        "reference for."
    ),
    "Transaction ID should be numeric.": (
        "Transaction IDs will always be numeric values. Verify that you're passing the "
        "transaction ID, and not reference"
    ),
    "Unknown bank code": (
        "Ensure that you're passing the correct bank code. Use the List Banks Endpoint to get "
        "the list of all available banks and their corresponding bank codes"
    ),
    "bank_code is required": (
        "Ensure that you're passing the correct bank code. Use the List Banks Endpoint to get "
        "the list of all available banks and their corresponding bank codes"
    ),
    "Account number is required": "Ensure you're passing an account number",
    "Account number should be numeric": "Ensure that your account_number consists of numbers only",
    "Could not resolve account name. Check parameters or try again.": (
        "Use the Fetch Bank endpoint to get a list of banks and their respective codes. Also "
        "confirm that the account number is correct."
    ),
    "Cannot resolve account": (
        "Use the Fetch Bank endpoint to get a list of banks and their respective codes. Also "
        "confirm that the account number is correct."
    ),
    "Recipient specified is invalid": (
        "Provide a valid recipient. Ensure you are passing the recipient code in the recipient "
        "param"
    ),
    "Please provide a unique reference. Reference already exists on a transfer": (
        "Create a new reference for the new transfer"
    ),
    "Your reference contains illegal special characters": (
        "Ensure that the reference contains only lowercase alphanumeric characters and the "
        'only special characters are hyphen ("-") and underscore ( "_")'
    ),
    "Your balance is not enough to fulfill this request": (
        "Topup your Paystack Balance and try again."
    ),
    "Transfer not found": (
        "Ensure that you're passing the id or code of a transfer that exists on this integration"
    ),
    "Transaction has been fully reversed": (
        "Let the customer know that the refund should get to their account soon."
    ),
    "Insufficient balance to fulfill this refund. Please top up.": (
        "You need to top up your Paystack balance"
    ),
}

# Authentication failures (catalogue, tag Authentication): answered with status and message only.
NO_AUTH_HEADER = "No Authorization Header was found"
MALFORMED_AUTH = "Format is Authorization Bearer [secret key]"
INVALID_KEY = "Invalid key"


class PaystackError(Exception):
    """An answer with `status: false`, rendered by the API's exception handler."""

    def __init__(
        self,
        message: str,
        status_code: int = 400,
        *,
        code: str | None = "invalid_params",
        type_: str = "validation_error",
        next_step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.type = type_
        self.next_step = next_step or NEXT_STEPS.get(message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": False, "message": self.message}
        if self.status_code == 401:
            return body
        if self.next_step:
            body["meta"] = {"nextStep": self.next_step}
        body["type"] = self.type
        if self.code:
            body["code"] = self.code
        return body


def missing(field: str) -> PaystackError:
    """A required parameter left out, as Paystack's validator words it."""
    return PaystackError(
        f'"{field}" is required',
        code="missing_params",
        next_step="Provide all required params ",
    )


def unauthorized(message: str) -> PaystackError:
    return PaystackError(message, 401)
