"""The one Paystack client: every call payments makes to Paystack (or to the sandbox, which is
the same API at another base URL) goes through `Paystack`.

- Typed answers: only the fields we use, parsed with pydantic (unknown fields ignored).
- Errors mapped to two kinds, which decide what the caller may do next:
  `PaystackRefused` — Paystack answered a definite "no" (4xx with `status: false`): nothing
  happened. `not_found` tells a missing object apart.
  `PaystackUnavailable` — a timeout, a connection error, a 5xx or an answer we cannot read:
  the outcome is unknown. A caller verifies (a read) before ever repeating a write.
- The secret key lives in the client's default headers; it is never logged or put in an error
  message (errors carry Paystack's `message` and the HTTP status only).
- `webhook_signature_ok`: the HMAC-SHA512 check of a webhook's raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from prometheus_client import Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

CALLS = Histogram(
    "krika_paystack_call_seconds",
    "Calls to Paystack by operation and outcome (ok, refused, unavailable)",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

T = TypeVar("T", bound=BaseModel)


class PaystackError(Exception):
    def __init__(self, operation: str, message: str, status_code: int | None = None) -> None:
        super().__init__(
            f"{operation}: {message}" + (f" (HTTP {status_code})" if status_code else "")
        )
        self.operation = operation
        self.message = message
        self.status_code = status_code


class PaystackRefused(PaystackError):
    """Paystack said no: the call had no effect."""

    @property
    def not_found(self) -> bool:
        return self.status_code == 404 or "not found" in self.message.lower()


class PaystackUnavailable(PaystackError):
    """No conclusive answer: the call may or may not have had its effect."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Initialized(_Model):
    authorization_url: str
    access_code: str
    reference: str


class Transaction(_Model):
    id: int
    status: str  # success | failed | abandoned | ongoing | pending | reversed ...
    reference: str
    amount: int
    currency: str
    paid_at: datetime | None = None
    gateway_response: str | None = None


class Refund(_Model):
    id: int
    status: str  # pending | processing | processed | failed | needs-attention
    amount: int
    currency: str


class Bank(_Model):
    name: str
    code: str
    active: bool = True
    currency: str | None = None


class ResolvedAccount(_Model):
    account_number: str
    account_name: str


class RecipientDetails(_Model):
    account_number: str | None = None
    account_name: str | None = None
    bank_code: str | None = None
    bank_name: str | None = None


class Recipient(_Model):
    recipient_code: str
    name: str | None = None
    currency: str | None = None
    details: RecipientDetails = Field(default_factory=RecipientDetails)


class Transfer(_Model):
    reference: str
    status: str  # pending | otp | success | failed | reversed | abandoned | blocked | ...
    amount: int
    currency: str
    transfer_code: str | None = None


def webhook_signature_ok(secret_key: str, raw_body: bytes, signature: str) -> bool:
    """`x-paystack-signature` is the hex HMAC-SHA512 of the exact body, keyed with the secret."""
    expected = hmac.new(secret_key.encode(), raw_body, hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    return response.reason_phrase or "no message"


class Paystack:
    """Paystack's API at `base_url`, authenticated with `secret_key`."""

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        model: type[T],
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Paystack's `data` parsed as `model` (a list of them when `data` is a list)."""
        started = time.perf_counter()
        outcome = "unavailable"
        try:
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.HTTPError as exc:
                raise PaystackUnavailable(operation, type(exc).__name__) from exc
            if response.status_code >= 500:
                raise PaystackUnavailable(operation, _message(response), response.status_code)
            if response.status_code >= 400:
                outcome = "refused"
                raise PaystackRefused(operation, _message(response), response.status_code)
            try:
                body = response.json()
                if not isinstance(body, dict) or body.get("status") is not True:
                    outcome = "refused"
                    raise PaystackRefused(operation, _message(response), response.status_code)
                data = body.get("data")
                parsed: Any = (
                    [model.model_validate(item) for item in data]
                    if isinstance(data, list)
                    else model.model_validate(data)
                )
            except (ValueError, ValidationError) as exc:
                raise PaystackUnavailable(
                    operation, f"unreadable answer ({type(exc).__name__})", response.status_code
                ) from exc
            outcome = "ok"
            return parsed
        finally:
            CALLS.labels(operation, outcome).observe(time.perf_counter() - started)

    async def initialize(
        self,
        *,
        email: str,
        amount: int,
        currency: str,
        reference: str,
        callback_url: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Initialized:
        body: dict[str, Any] = {
            "email": email,
            "amount": amount,
            "currency": currency,
            "reference": reference,
        }
        if callback_url:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = metadata
        found: Initialized = await self._call(
            "transaction_initialize", "POST", "/transaction/initialize", Initialized, json=body
        )
        return found

    async def verify(self, reference: str) -> Transaction:
        found: Transaction = await self._call(
            "transaction_verify", "GET", f"/transaction/verify/{_segment(reference)}", Transaction
        )
        return found

    async def refund(self, *, reference: str, amount: int, currency: str, note: str) -> Refund:
        body = {
            "transaction": reference,
            "amount": amount,
            "currency": currency,
            "merchant_note": note,
        }
        found: Refund = await self._call("refund_create", "POST", "/refund", Refund, json=body)
        return found

    async def get_refund(self, refund_id: int) -> Refund:
        found: Refund = await self._call("refund_fetch", "GET", f"/refund/{refund_id}", Refund)
        return found

    async def banks(self, currency: str) -> list[Bank]:
        found: list[Bank] = await self._call(
            "bank_list", "GET", "/bank", Bank, params={"currency": currency, "perPage": "100"}
        )
        return found

    async def resolve_account(self, account_number: str, bank_code: str) -> ResolvedAccount:
        found: ResolvedAccount = await self._call(
            "bank_resolve",
            "GET",
            "/bank/resolve",
            ResolvedAccount,
            params={"account_number": account_number, "bank_code": bank_code},
        )
        return found

    async def create_recipient(
        self, *, name: str, account_number: str, bank_code: str, currency: str
    ) -> Recipient:
        body = {
            "type": "nuban",
            "name": name,
            "account_number": account_number,
            "bank_code": bank_code,
            "currency": currency,
        }
        found: Recipient = await self._call(
            "transferrecipient_create", "POST", "/transferrecipient", Recipient, json=body
        )
        return found

    async def transfer(
        self, *, amount: int, currency: str, recipient: str, reference: str, reason: str
    ) -> Transfer:
        body = {
            "source": "balance",
            "amount": amount,
            "currency": currency,
            "recipient": recipient,
            "reference": reference,
            "reason": reason,
        }
        found: Transfer = await self._call(
            "transfer_initiate", "POST", "/transfer", Transfer, json=body
        )
        return found

    async def verify_transfer(self, reference: str) -> Transfer:
        found: Transfer = await self._call(
            "transfer_verify", "GET", f"/transfer/verify/{_segment(reference)}", Transfer
        )
        return found


def _segment(value: str) -> str:
    """A reference as one path segment (ours are [A-Za-z0-9_-]; anything else is escaped)."""
    return quote(value, safe="")
