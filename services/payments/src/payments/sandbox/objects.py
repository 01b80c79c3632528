"""Rows as Paystack shows them: the transaction, recipient, transfer and refund objects, with
Paystack's field names (camelCase where Paystack uses it) and its formats."""

from __future__ import annotations

import secrets
import string
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from .banks import BY_CODE
from .store import loads

INTEGRATION_ID = 463433
BUSINESS_NAME = "Krika Sandbox"
# Who Paystack names as having refunded (the integration owner's e-mail).
INTEGRATION_EMAIL = "payments@krika.test"
DOMAIN = "test"

_LOWER = string.ascii_lowercase + string.digits
_MIXED = string.ascii_letters + string.digits


def code(length: int, alphabet: str = _LOWER) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_reference() -> str:
    return code(10)


def new_access_code() -> str:
    return code(15)


def new_transfer_code() -> str:
    return f"TRF_{code(16)}"


def new_recipient_code() -> str:
    return f"RCP_{code(15)}"


def new_customer_code() -> str:
    return f"CUS_{code(15)}"


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    """Paystack's timestamps: UTC, milliseconds, `Z`."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_card_authorization() -> dict[str, Any]:
    """The authorization of Paystack's test Visa card (4084 0840 8408 4081)."""
    return {
        "authorization_code": f"AUTH_{code(10)}",
        "bin": "408408",
        "last4": "4081",
        "exp_month": "12",
        "exp_year": "2030",
        "channel": "card",
        "card_type": "visa ",
        "bank": "TEST BANK",
        "country_code": "NG",
        "brand": "visa",
        "reusable": True,
        "signature": f"SIG_{code(20, _MIXED)}",
        "account_name": None,
        "receiver_bank_account_number": None,
        "receiver_bank": None,
    }


def local_card_fee(amount: int) -> int:
    """Paystack's fee on a local (NGN) card payment: 1.5% + ₦100 (the ₦100 waived under
    ₦2,500), capped at ₦2,000; in kobo."""
    fee = (amount * 15 + 999) // 1000 + (10000 if amount >= 250000 else 0)
    return min(fee, 200000)


def customer_object(customer: Row[Any]) -> dict[str, Any]:
    return {
        "id": customer.id,
        "first_name": None,
        "last_name": None,
        "email": customer.email,
        "customer_code": customer.customer_code,
        "phone": None,
        "metadata": None,
        "risk_action": "default",
        "international_format_phone": None,
    }


def transaction_log(txn: Row[Any]) -> dict[str, Any] | None:
    if txn.paid_at is None and txn.status != "failed":
        return None
    spent = max(1, round((txn.paid_at or txn.created_at) - txn.created_at))
    success = txn.status in ("success", "reversed")
    return {
        "start_time": int(txn.created_at),
        "time_spent": spent,
        "attempts": 1,
        "errors": 0 if success else 1,
        "success": success,
        "mobile": False,
        "input": [],
        "history": [
            {"type": "action", "message": "Attempted to pay with card", "time": spent},
            {"type": "success", "message": "Successfully paid with card", "time": spent}
            if success
            else {"type": "error", "message": "Error: Declined", "time": spent},
        ],
    }


def transaction_object(txn: Row[Any], customer: Row[Any]) -> dict[str, Any]:
    """The transaction as GET /transaction/verify/:reference shows it (and charge.success)."""
    return {
        "id": txn.id,
        "domain": DOMAIN,
        "status": txn.status,
        "reference": txn.reference,
        "receipt_number": None,
        "amount": txn.amount,
        "message": None,
        "gateway_response": txn.gateway_response,
        "paid_at": iso(txn.paid_at),
        "created_at": iso(txn.created_at),
        "channel": txn.channel,
        "currency": txn.currency,
        "ip_address": None,
        "metadata": loads(txn.metadata),
        "log": transaction_log(txn),
        "fees": txn.fees,
        "fees_split": None,
        "authorization": loads(txn.authorization) or {},
        "customer": customer_object(customer),
        "plan": None,
        "split": {},
        "order_id": None,
        "paidAt": iso(txn.paid_at),
        "createdAt": iso(txn.created_at),
        "requested_amount": txn.requested_amount,
        "pos_transaction_data": None,
        "source": None,
        "fees_breakdown": None,
        "connect": None,
        "transaction_date": iso(txn.created_at),
        "plan_object": {},
        "subaccount": {},
    }


def recipient_object(recipient: Row[Any]) -> dict[str, Any]:
    bank = BY_CODE.get(recipient.bank_code)
    return {
        "active": True,
        "createdAt": iso(recipient.created_at),
        "currency": recipient.currency,
        "description": recipient.description,
        "domain": DOMAIN,
        "email": recipient.email,
        "id": recipient.id,
        "integration": INTEGRATION_ID,
        "metadata": loads(recipient.metadata),
        "name": recipient.name,
        "recipient_code": recipient.recipient_code,
        "type": recipient.type,
        "updatedAt": iso(recipient.updated_at),
        "is_deleted": False,
        "isDeleted": False,
        "details": {
            "authorization_code": None,
            "account_number": recipient.account_number,
            "account_name": recipient.account_name,
            "bank_code": recipient.bank_code,
            "bank_name": bank["name"] if bank else None,
        },
    }


def transfer_object(
    transfer: Row[Any], recipient: Row[Any], *, expand_recipient: bool
) -> dict[str, Any]:
    """POST /transfer and finalize show the recipient's id; verify and fetch expand it."""
    return {
        "amount": transfer.amount,
        "createdAt": iso(transfer.created_at),
        "currency": transfer.currency,
        "domain": DOMAIN,
        "failures": None,
        "id": transfer.id,
        "integration": INTEGRATION_ID,
        "reason": transfer.reason,
        "reference": transfer.reference,
        "source": transfer.source,
        "source_details": None,
        "status": transfer.status,
        "titan_code": None,
        "transfer_code": transfer.transfer_code,
        "request": transfer.id,
        "transferred_at": iso(transfer.transferred_at),
        "updatedAt": iso(transfer.updated_at),
        "recipient": recipient_object(recipient) if expand_recipient else recipient.id,
        "session": {"provider": None, "id": None},
        "fee_charged": 0,
        "fees_breakdown": None,
        "gateway_response": None,
    }


def transfer_event_data(transfer: Row[Any], recipient: Row[Any]) -> dict[str, Any]:
    """A transfer.* webhook's data: the transfer with its recipient, and the integration as an
    object (as Paystack's transfer events carry it)."""
    data = transfer_object(transfer, recipient, expand_recipient=True)
    data["integration"] = {"id": INTEGRATION_ID, "is_live": False, "business_name": BUSINESS_NAME}
    if transfer.status != "pending":
        data["session"] = {"provider": "nip", "id": f"{100004:06d}{transfer.id:024d}"}
    return data


def refund_object(refund: Row[Any], txn: Row[Any], customer: Row[Any]) -> dict[str, Any]:
    """The refund as GET /refund/:id shows it."""
    return {
        "integration": INTEGRATION_ID,
        "transaction": txn.id,
        "dispute": None,
        "settlement": None,
        "id": refund.id,
        "domain": DOMAIN,
        "currency": refund.currency,
        "amount": refund.amount,
        "status": refund.status,
        "refunded_at": iso(refund.refunded_at),
        "expected_at": iso(refund.created_at + 8 * 24 * 3600),
        "refunded_by": INTEGRATION_EMAIL,
        "customer_note": refund.customer_note,
        "merchant_note": refund.merchant_note,
        "deducted_amount": refund.amount,
        "fully_deducted": True,
        "createdAt": iso(refund.created_at),
        "updatedAt": iso(refund.updated_at),
        "bank_reference": None,
        "transaction_reference": txn.reference,
        "reason": None,
        "customer": customer_object(customer),
        "refund_type": "full" if refund.amount == txn.amount else "partial",
        "transaction_amount": txn.amount,
        "initiated_by": INTEGRATION_EMAIL,
        "refund_channel": "card",
        "session_id": None,
        "collect_account_number": False,
    }


def refund_created_object(refund: Row[Any], txn: Row[Any], customer: Row[Any]) -> dict[str, Any]:
    """The refund as POST /refund answers it: the transaction summarised inside."""
    data = refund_object(refund, txn, customer)
    authorization = loads(txn.authorization) or {}
    data["transaction"] = {
        "id": txn.id,
        "domain": DOMAIN,
        "reference": txn.reference,
        "amount": txn.amount,
        "paid_at": iso(txn.paid_at),
        "channel": txn.channel,
        "currency": txn.currency,
        "authorization": {
            "exp_month": authorization.get("exp_month"),
            "exp_year": authorization.get("exp_year"),
            "account_name": authorization.get("account_name"),
        },
        "customer": {"international_format_phone": None},
        "plan": {},
        "subaccount": {"currency": None},
        "split": {},
        "order_id": None,
        "paidAt": iso(txn.paid_at),
        "pos_transaction_data": None,
        "source": None,
        "fees_breakdown": None,
    }
    data["channel"] = None
    return data


def refund_event_data(refund: Row[Any], txn: Row[Any], customer: Row[Any]) -> dict[str, Any]:
    """A refund.* webhook's data as Paystack documents it. Its examples give `amount` as a
    string for refund.pending and refund.processed and as a number for refund.failed; the
    sandbox sends the same."""
    amount: int | str = refund.amount if refund.status == "failed" else str(refund.amount)
    return {
        "status": refund.status,
        "transaction_reference": txn.reference,
        "refund_reference": refund.refund_reference,
        "amount": amount,
        "currency": refund.currency,
        "processor": "mpgs_zen",
        "customer": {"first_name": None, "last_name": None, "email": customer.email},
        "integration": INTEGRATION_ID,
        "domain": DOMAIN,
        "id": str(refund.id),
        "customer_note": refund.customer_note,
        "merchant_note": refund.merchant_note,
    }
