"""What the emulated Paystack does: transactions and their checkout, recipients, transfers,
refunds and the balance. Functions take a connection inside `Store.tx()`, raise
`PaystackError` with Paystack's answers, and return Paystack's objects.

Money moves as on Paystack: a successful charge credits the balance with its amount less
Paystack's fee; a transfer debits its amount when initiated and a failed or reversed one
gives it back; a refund debits its amount when created and a failed one gives it back.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from . import banks
from .errors import PaystackError, missing
from .objects import (
    INTEGRATION_EMAIL,
    code,
    local_card_fee,
    new_access_code,
    new_customer_code,
    new_recipient_code,
    new_reference,
    new_transfer_code,
    recipient_object,
    refund_created_object,
    refund_event_data,
    refund_object,
    test_card_authorization,
    transaction_object,
    transfer_event_data,
    transfer_object,
)
from .rules import ChargeRule, RefundRule, TransferRule, take_rule
from .store import customers, dumps, integration, recipients, refunds, transactions, transfers
from .webhooks import queue_event

# The OTP that finalizes a transfer in the sandbox.
SANDBOX_OTP = "123456"
CURRENCIES = ("NGN",)
# Paystack's ceiling for one transaction: 10,000,000 in the currency's major unit.
MAX_TRANSACTION_AMOUNT = 10_000_000 * 100

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRANSACTION_REFERENCE = re.compile(r"^[A-Za-z0-9.=-]+$")
_TRANSFER_REFERENCE = re.compile(r"^[A-Za-z0-9_-]+$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _text(params: dict[str, Any], name: str) -> str | None:
    """A parameter as a string (numbers as given), None when absent or empty."""
    value = params.get(name)
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip() or None


def parse_amount(value: Any) -> int | None:
    """A positive whole amount in minor units: integers and numeric strings ("5000") are
    taken; fractions, zero, negatives and anything else are not (None)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float | str):
        text = str(value).strip()
        if not _NUMBER.fullmatch(text):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    if number != number.to_integral_value() or number <= 0:
        return None
    return int(number)


def _zero(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and Decimal(str(value).strip()) == 0
    except InvalidOperation:
        return False


def _currency(params: dict[str, Any]) -> str:
    currency = (_text(params, "currency") or "NGN").upper()
    if currency not in CURRENCIES:
        raise PaystackError("Currency not supported by merchant", code="unsupported_currency")
    return currency


def _metadata(value: Any) -> Any:
    """Metadata as Paystack keeps it: an object (also when sent as a JSON string), or ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _channels(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [value]
    if isinstance(value, dict):  # channels[0]=card&channels[1]=bank
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return [str(v) for v in value]


# --------------------------------------------------------------------------- balance


async def balance(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(integration.c.balance)) or 0)


async def set_balance(conn: AsyncConnection, amount: int) -> None:
    await conn.execute(integration.update().values(balance=amount))


async def _credit(conn: AsyncConnection, amount: int) -> None:
    await conn.execute(integration.update().values(balance=integration.c.balance + amount))


async def _debit(conn: AsyncConnection, amount: int) -> bool:
    """Take `amount` from the balance if it holds that much (one conditional UPDATE)."""
    result = await conn.execute(
        integration.update()
        .where(integration.c.balance >= amount)
        .values(balance=integration.c.balance - amount)
    )
    return result.rowcount == 1


async def webhook_url(conn: AsyncConnection, default: str | None) -> str | None:
    row = (await conn.execute(sa.select(integration))).one()
    return row.webhook_url if row.webhook_url_set else default


async def set_webhook_url(conn: AsyncConnection, url: str | None) -> None:
    await conn.execute(integration.update().values(webhook_url=url, webhook_url_set=True))


# --------------------------------------------------------------------------- transactions


async def _customer(conn: AsyncConnection, email: str, at: float) -> Row[Any]:
    row = (await conn.execute(sa.select(customers).where(customers.c.email == email))).first()
    if row is not None:
        return row
    await conn.execute(
        customers.insert().values(email=email, customer_code=new_customer_code(), created_at=at)
    )
    return (await conn.execute(sa.select(customers).where(customers.c.email == email))).one()


async def _transaction_and_customer(
    conn: AsyncConnection, where: sa.ColumnElement[bool]
) -> tuple[Row[Any], Row[Any]] | None:
    txn = (await conn.execute(sa.select(transactions).where(where))).first()
    if txn is None:
        return None
    customer = (
        await conn.execute(sa.select(customers).where(customers.c.id == txn.customer_id))
    ).one()
    return txn, customer


async def initialize_transaction(
    conn: AsyncConnection, params: dict[str, Any], public_url: str, at: float
) -> dict[str, Any]:
    email = _text(params, "email")
    if email is None:
        raise PaystackError("Email is not allowed to be empty", code="missing_params")
    if not _EMAIL.fullmatch(email):
        raise PaystackError("Invalid Email Address Passed")
    raw_amount = params.get("amount")
    amount = parse_amount(raw_amount)
    if amount is None:
        if _zero(raw_amount):
            raise PaystackError("You must specify a valid amount")
        raise PaystackError("Invalid Amount Sent")
    if amount > MAX_TRANSACTION_AMOUNT:
        raise PaystackError("Transaction amount limit exceeded")
    currency = _currency(params)
    reference = _text(params, "reference")
    if reference is None:
        reference = new_reference()
    elif not _TRANSACTION_REFERENCE.fullmatch(reference):
        raise PaystackError("Invalid character in transaction reference")
    taken = await conn.scalar(
        sa.select(transactions.c.id).where(transactions.c.reference == reference)
    )
    if taken is not None:
        raise PaystackError(
            "Duplicate Transaction Reference",
            code="duplicate_reference",
            next_step="Try and create the Transaction or Charge with a new reference",
        )
    customer = await _customer(conn, email, at)
    access_code = new_access_code()
    await conn.execute(
        transactions.insert().values(
            reference=reference,
            access_code=access_code,
            status="abandoned",
            amount=amount,
            requested_amount=amount,
            currency=currency,
            customer_id=customer.id,
            email=email,
            callback_url=_text(params, "callback_url"),
            metadata=dumps(_metadata(params.get("metadata"))),
            channels=dumps(_channels(params.get("channels"))),
            gateway_response="The transaction was not completed",
            channel="card",
            fees=None,
            authorization=None,
            refunded=0,
            paid_at=None,
            created_at=at,
        )
    )
    return {
        "authorization_url": f"{public_url.rstrip('/')}/checkout/{access_code}",
        "access_code": access_code,
        "reference": reference,
    }


async def verify_transaction(conn: AsyncConnection, reference: str) -> dict[str, Any]:
    found = await _transaction_and_customer(conn, transactions.c.reference == reference)
    if found is None:
        raise PaystackError("Transaction reference not found", code="transaction_not_found")
    return transaction_object(*found)


async def fetch_transaction(conn: AsyncConnection, transaction_id: str) -> dict[str, Any]:
    if not (transaction_id.isascii() and transaction_id.isdigit()):
        raise PaystackError("Transaction ID should be numeric.")
    found = await _transaction_and_customer(conn, transactions.c.id == int(transaction_id))
    if found is None:
        raise PaystackError("Transaction not found", 404, code="transaction_not_found")
    return transaction_object(*found)


async def checkout_transaction(
    conn: AsyncConnection, access_code: str
) -> tuple[Row[Any], Row[Any]] | None:
    return await _transaction_and_customer(conn, transactions.c.access_code == access_code)


async def complete_checkout(conn: AsyncConnection, txn: Row[Any], outcome: str, at: float) -> bool:
    """The customer pays (`success`) or the card is declined (`failed`). False if the
    transaction was already completed (nothing changes)."""
    if txn.status != "abandoned":
        return False
    if outcome == "failed":
        # A declined payment sends no webhook: Paystack has no charge.failed event.
        await conn.execute(
            transactions.update()
            .where(transactions.c.id == txn.id)
            .values(status="failed", gateway_response="Declined", paid_at=None)
        )
        return True
    rule = await take_rule(
        conn, ChargeRule, "charge", lambda r: r.reference in (None, txn.reference)
    )
    amount = rule.amount if rule is not None else txn.amount
    fees = local_card_fee(amount)
    await conn.execute(
        transactions.update()
        .where(transactions.c.id == txn.id)
        .values(
            status="success",
            amount=amount,
            fees=fees,
            gateway_response="Successful",
            channel="card",
            authorization=dumps(test_card_authorization()),
            paid_at=at,
        )
    )
    await _credit(conn, amount - fees)
    paid = await _transaction_and_customer(conn, transactions.c.id == txn.id)
    assert paid is not None
    await queue_event(conn, "charge.success", txn.reference, transaction_object(*paid), at)
    return True


# --------------------------------------------------------------------------- banks


def list_banks(params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """GET /bank: Nigeria's banks (another country or currency has none here), cursor meta."""
    country = (_text(params, "country") or "nigeria").lower()
    currency = (_text(params, "currency") or "NGN").upper()
    listed = list(banks.BANKS) if country == "nigeria" and currency == "NGN" else []
    listed.sort(key=lambda bank: str(bank["name"]).lower())
    per_page = parse_amount(params.get("perPage") or params.get("per_page")) or 50
    per_page = min(per_page, 100)
    start = 0
    if cursor := _text(params, "next"):
        start = _after_cursor(listed, cursor)
    elif cursor := _text(params, "previous"):
        start = max(0, _after_cursor(listed, cursor) - 1 - per_page)
    elif page := parse_amount(params.get("page")):
        start = (page - 1) * per_page
    shown = listed[start : start + per_page]
    meta = {
        "next": _cursor(shown[-1]) if shown and start + per_page < len(listed) else None,
        "previous": _cursor(shown[0]) if shown and start > 0 else None,
        "perPage": per_page,
    }
    return shown, meta


def _cursor(bank: dict[str, Any]) -> str:
    return base64.b64encode(f"bank:{bank['id']}".encode()).decode()


def _after_cursor(listed: list[dict[str, Any]], cursor: str) -> int:
    for index, bank in enumerate(listed):
        if _cursor(bank) == cursor:
            return index + 1
    return 0


def resolve_account(params: dict[str, Any]) -> dict[str, Any]:
    account_number = _text(params, "account_number")
    bank_code = _text(params, "bank_code")
    if account_number is None:
        raise PaystackError("Account number is required", code="missing_params")
    if bank_code is None:
        raise PaystackError("bank_code is required", code="missing_params")
    if not (account_number.isascii() and account_number.isdigit()):
        raise PaystackError("Account number should be numeric")
    if not banks.resolvable(account_number, bank_code):
        raise PaystackError(
            "Could not resolve account name. Check parameters or try again.",
            422,
            code="unknown",
            type_="api_error",
        )
    return {
        "account_number": account_number,
        "account_name": banks.account_name(account_number),
        "bank_id": banks.BY_CODE[bank_code]["id"],
    }


# --------------------------------------------------------------------------- recipients


async def create_recipient(
    conn: AsyncConnection, params: dict[str, Any], at: float
) -> dict[str, Any]:
    recipient_type = _text(params, "type")
    if recipient_type is None:
        raise missing("type")
    if recipient_type != "nuban":
        raise PaystackError(
            f"Recipient type {recipient_type} is not supported by the sandbox: use nuban"
        )
    name = _text(params, "name")
    if name is None:
        raise missing("name")
    account_number = _text(params, "account_number")
    if account_number is None:
        raise PaystackError("Account number is required", code="missing_params")
    bank_code = _text(params, "bank_code")
    if bank_code is None:
        raise PaystackError("bank_code is required", code="missing_params")
    if bank_code not in banks.BY_CODE:
        raise PaystackError("Unknown bank code")
    if not (account_number.isascii() and account_number.isdigit() and len(account_number) == 10):
        raise PaystackError("Account number is invalid")
    if not banks.resolvable(account_number, bank_code):
        raise PaystackError("Cannot resolve account")
    currency = _currency(params)
    same_account = sa.and_(
        recipients.c.type == recipient_type,
        recipients.c.account_number == account_number,
        recipients.c.bank_code == bank_code,
        recipients.c.currency == currency,
    )
    # "A duplicate account number will lead to the retrieval of the existing record."
    existing = (await conn.execute(sa.select(recipients).where(same_account))).first()
    if existing is not None:
        return recipient_object(existing)
    metadata = params.get("metadata")
    await conn.execute(
        recipients.insert().values(
            recipient_code=new_recipient_code(),
            type=recipient_type,
            name=name,
            account_number=account_number,
            account_name=banks.account_name(account_number),
            bank_code=bank_code,
            currency=currency,
            description=_text(params, "description"),
            email=_text(params, "email"),
            metadata=None if metadata in (None, "") else dumps(_metadata(metadata)),
            created_at=at,
            updated_at=at,
        )
    )
    return recipient_object((await conn.execute(sa.select(recipients).where(same_account))).one())


# --------------------------------------------------------------------------- transfers


async def _transfer_and_recipient(
    conn: AsyncConnection, where: sa.ColumnElement[bool]
) -> tuple[Row[Any], Row[Any]] | None:
    transfer = (await conn.execute(sa.select(transfers).where(where))).first()
    if transfer is None:
        return None
    recipient = (
        await conn.execute(sa.select(recipients).where(recipients.c.id == transfer.recipient_id))
    ).one()
    return transfer, recipient


async def initiate_transfer(
    conn: AsyncConnection, params: dict[str, Any], settle_after: float, at: float
) -> tuple[str, dict[str, Any]]:
    """POST /transfer: (message, transfer)."""
    source = _text(params, "source") or "balance"
    if source != "balance":
        raise PaystackError('"source" must be [balance]')
    amount = parse_amount(params.get("amount"))
    if amount is None:
        raise PaystackError("Invalid amount passed.")
    recipient_code = _text(params, "recipient")
    if recipient_code is None:
        raise missing("recipient")
    currency = _currency(params)
    reference = _text(params, "reference")
    if reference is None:
        reference = code(16)
    elif not _TRANSFER_REFERENCE.fullmatch(reference):
        raise PaystackError("Your reference contains illegal special characters")
    recipient = (
        await conn.execute(
            sa.select(recipients).where(recipients.c.recipient_code == recipient_code)
        )
    ).first()
    if recipient is None:
        raise PaystackError("Recipient specified is invalid", code="invalid_transfer_recipient")
    taken = await conn.scalar(sa.select(transfers.c.id).where(transfers.c.reference == reference))
    if taken is not None:
        raise PaystackError(
            "Please provide a unique reference. Reference already exists on a transfer",
            code="duplicate_reference",
        )
    if not await _debit(conn, amount):
        raise PaystackError(
            "Your balance is not enough to fulfill this request",
            code="insufficient_balance",
            type_="api_error",
        )
    rule = await take_rule(
        conn, TransferRule, "transfer", lambda r: r.reference in (None, reference)
    )
    answer = rule.answer if rule is not None else "pending"
    outcome = rule.outcome if rule is not None else "success"
    settles = answer != "otp" and outcome != "none"
    await conn.execute(
        transfers.insert().values(
            transfer_code=new_transfer_code(),
            reference=reference,
            amount=amount,
            currency=currency,
            source=source,
            reason=_text(params, "reason"),
            recipient_id=recipient.id,
            status=answer,
            outcome=outcome,
            settle_at=at + settle_after if settles else None,
            transferred_at=None,
            created_at=at,
            updated_at=at,
        )
    )
    found = await _transfer_and_recipient(conn, transfers.c.reference == reference)
    assert found is not None
    data = {
        "transfersessionid": [],
        "transfertrials": [],
        **transfer_object(*found, expand_recipient=False),
    }
    if answer == "otp":
        return "Transfer requires OTP to continue", data
    return "Transfer has been queued", data


async def finalize_transfer(
    conn: AsyncConnection, params: dict[str, Any], settle_after: float, at: float
) -> dict[str, Any]:
    transfer_code = _text(params, "transfer_code")
    if transfer_code is None:
        raise missing("transfer_code")
    otp = _text(params, "otp")
    if otp is None:
        raise missing("otp")
    found = await _transfer_and_recipient(conn, transfers.c.transfer_code == transfer_code)
    if found is None:
        raise PaystackError("Transfer code is invalid")
    transfer, _ = found
    if transfer.status != "otp":
        raise PaystackError("Transfer is not currently awaiting OTP")
    if otp != SANDBOX_OTP:
        raise PaystackError("Invalid OTP", code="invalid_otp")
    settles = transfer.outcome != "none"
    await conn.execute(
        transfers.update()
        .where(transfers.c.id == transfer.id)
        .values(status="pending", settle_at=at + settle_after if settles else None, updated_at=at)
    )
    found = await _transfer_and_recipient(conn, transfers.c.id == transfer.id)
    assert found is not None
    return transfer_object(*found, expand_recipient=False)


async def verify_transfer(conn: AsyncConnection, reference: str) -> dict[str, Any]:
    found = await _transfer_and_recipient(conn, transfers.c.reference == reference)
    if found is None:
        raise PaystackError("Transfer not found", 404, code="transfer_not_found")
    return transfer_object(*found, expand_recipient=True)


async def fetch_transfer(conn: AsyncConnection, id_or_code: str) -> dict[str, Any]:
    if id_or_code.isascii() and id_or_code.isdigit():
        where = transfers.c.id == int(id_or_code)
    else:
        where = transfers.c.transfer_code == id_or_code
    found = await _transfer_and_recipient(conn, where)
    if found is None:
        raise PaystackError("Transfer ID/code specified is invalid.", 404, code="not_found")
    return transfer_object(*found, expand_recipient=True)


async def settle_transfers(conn: AsyncConnection, at: float) -> None:
    """Pending transfers whose time has come reach their outcome, with its webhook."""
    due = (
        await conn.execute(
            sa.select(transfers.c.id)
            .where(transfers.c.settle_at <= at, transfers.c.status.in_(("pending", "success")))
            .order_by(transfers.c.settle_at, transfers.c.id)
        )
    ).all()
    for (transfer_id,) in due:
        found = await _transfer_and_recipient(conn, transfers.c.id == transfer_id)
        assert found is not None
        transfer, _ = found
        outcome = transfer.outcome
        await conn.execute(
            transfers.update()
            .where(transfers.c.id == transfer_id)
            .values(
                status=outcome,
                settle_at=None,
                transferred_at=at if outcome in ("success", "reversed") else None,
                updated_at=at,
            )
        )
        if outcome in ("failed", "reversed"):
            await _credit(conn, transfer.amount)
        settled = await _transfer_and_recipient(conn, transfers.c.id == transfer_id)
        assert settled is not None
        await queue_event(
            conn, f"transfer.{outcome}", transfer.reference, transfer_event_data(*settled), at
        )


# --------------------------------------------------------------------------- refunds


async def create_refund(
    conn: AsyncConnection, params: dict[str, Any], settle_after: float, at: float
) -> dict[str, Any]:
    ref_or_id = _text(params, "transaction")
    if ref_or_id is None:
        raise missing("transaction")
    found = await _transaction_and_customer(conn, transactions.c.reference == ref_or_id)
    if found is None and ref_or_id.isascii() and ref_or_id.isdigit():
        found = await _transaction_and_customer(conn, transactions.c.id == int(ref_or_id))
    if found is None:
        raise PaystackError("Transaction not found", code="transaction_not_found")
    txn, customer = found
    left = txn.amount - txn.refunded
    if txn.status == "reversed" or (txn.status == "success" and left <= 0):
        raise PaystackError("Transaction has been fully reversed")
    if txn.status != "success":
        raise PaystackError("Cannot refund a transaction that is not successful")
    amount = left
    if params.get("amount") not in (None, ""):
        requested = parse_amount(params.get("amount"))
        if requested is None:
            raise PaystackError("Invalid Amount Sent")
        if requested > left:
            raise PaystackError(
                "Refund amount cannot be more than the unrefunded transaction amount"
            )
        amount = requested
    currency = (_text(params, "currency") or txn.currency).upper()
    if currency != txn.currency:
        raise PaystackError("Currency not supported by merchant", code="unsupported_currency")
    if not await _debit(conn, amount):
        raise PaystackError(
            "Insufficient balance to fulfill this refund. Please top up.",
            code="insufficient_balance",
            type_="api_error",
        )
    rule = await take_rule(
        conn, RefundRule, "refund", lambda r: r.transaction in (None, txn.reference)
    )
    result = await conn.execute(
        refunds.insert().values(
            transaction_id=txn.id,
            amount=amount,
            currency=currency,
            status="pending",
            outcome=rule.outcome if rule is not None else "processed",
            customer_note=_text(params, "customer_note")
            or f"Refund for transaction {txn.reference}",
            merchant_note=_text(params, "merchant_note")
            or f"Refund for transaction {txn.reference} by {INTEGRATION_EMAIL}",
            refund_reference=None,
            settle_at=at + settle_after,
            refunded_at=None,
            created_at=at,
            updated_at=at,
        )
    )
    await conn.execute(
        transactions.update()
        .where(transactions.c.id == txn.id)
        .values(refunded=transactions.c.refunded + amount)
    )
    refund_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    refund = (await conn.execute(sa.select(refunds).where(refunds.c.id == refund_id))).one()
    await queue_event(
        conn, "refund.pending", txn.reference, refund_event_data(refund, txn, customer), at
    )
    return refund_created_object(refund, txn, customer)


async def fetch_refund(conn: AsyncConnection, refund_id: str) -> dict[str, Any]:
    refund = None
    if refund_id.isascii() and refund_id.isdigit():
        refund = (
            await conn.execute(sa.select(refunds).where(refunds.c.id == int(refund_id)))
        ).first()
    if refund is None:
        raise PaystackError("Refund not found", 404, code="not_found")
    found = await _transaction_and_customer(conn, transactions.c.id == refund.transaction_id)
    assert found is not None
    return refund_object(refund, *found)


async def settle_refunds(conn: AsyncConnection, at: float) -> None:
    """Pending refunds whose time has come are processed (or fail), with their webhook."""
    due = (
        await conn.execute(
            sa.select(refunds)
            .where(refunds.c.settle_at <= at, refunds.c.status == "pending")
            .order_by(refunds.c.settle_at, refunds.c.id)
        )
    ).all()
    for refund in due:
        found = await _transaction_and_customer(conn, transactions.c.id == refund.transaction_id)
        assert found is not None
        txn, customer = found
        if refund.outcome == "failed":
            values: dict[str, Any] = {"status": "failed"}
            await _credit(conn, refund.amount)
            await conn.execute(
                transactions.update()
                .where(transactions.c.id == txn.id)
                .values(refunded=transactions.c.refunded - refund.amount)
            )
        else:
            values = {
                "status": "processed",
                "refunded_at": at,
                "refund_reference": code(12, "0123456789"),
            }
            if txn.refunded >= txn.amount:
                await conn.execute(
                    transactions.update()
                    .where(transactions.c.id == txn.id)
                    .values(status="reversed")
                )
        await conn.execute(
            refunds.update()
            .where(refunds.c.id == refund.id)
            .values(settle_at=None, updated_at=at, **values)
        )
        settled = (await conn.execute(sa.select(refunds).where(refunds.c.id == refund.id))).one()
        await queue_event(
            conn,
            f"refund.{settled.status}",
            txn.reference,
            refund_event_data(settled, txn, customer),
            at,
        )


async def next_settlement(conn: AsyncConnection) -> float | None:
    """When the next transfer or refund is due to settle."""
    transfer_due = await conn.scalar(
        sa.select(sa.func.min(transfers.c.settle_at)).where(
            transfers.c.status.in_(("pending", "success"))
        )
    )
    refund_due = await conn.scalar(
        sa.select(sa.func.min(refunds.c.settle_at)).where(refunds.c.status == "pending")
    )
    due = [t for t in (transfer_due, refund_due) if t is not None]
    return min(due) if due else None
