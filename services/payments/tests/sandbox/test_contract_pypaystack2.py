"""Contract: pypaystack2 (a published Paystack client library, from PyPI) against the sandbox
process. The library is pointed at the sandbox the way it allows, through the `_BASE_URL`
class attribute of its clients (subclassed here); nothing else of it is changed. Every
answer must parse into the library's own models as a success, with the values expected."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, cast

from pypaystack2.base_clients import BaseAsyncAPIClient
from pypaystack2.enums import Country, Currency, RecipientType
from pypaystack2.models import (
    Bank,
    BankAccountInfo,
    Refund,
    Response,
    Transfer,
    TransferRecipient,
)
from pypaystack2.models.response_models import InitTransaction, Transaction
from pypaystack2.sub_clients import (
    AsyncMiscellaneousClient,
    AsyncRefundClient,
    AsyncTransactionClient,
    AsyncTransferClient,
    AsyncTransferRecipientClient,
    AsyncVerificationClient,
)

from krika_common.testing import eventually
from payments.sandbox.banks import account_name
from payments.sandbox.testing import Sandbox

from .factories import reference

C = TypeVar("C", bound=BaseAsyncAPIClient)


def at_sandbox(client_class: type[C], sandbox: Sandbox) -> C:
    """The library's client, talking to the sandbox instead of api.paystack.co."""
    pointed = type(client_class.__name__, (client_class,), {"_BASE_URL": sandbox.base_url})
    return cast(C, pointed(secret_key=sandbox.secret_key))


async def test_transactions(sandbox: Sandbox) -> None:
    transactions = at_sandbox(AsyncTransactionClient, sandbox)
    ref = reference("lib")
    started: Response[Any] = await transactions.initialize(
        amount=250000,
        email="lib@example.com",
        currency=Currency.NGN,
        reference=ref,
        callback_url="https://shop.example/return",
        metadata={"order_id": "o-lib"},
    )
    assert started.status is True
    assert started.message == "Authorization URL created"
    assert isinstance(started.data, InitTransaction)
    assert started.data.reference == ref
    assert started.data.authorization_url.startswith(f"{sandbox.base_url}/checkout/")

    unpaid: Response[Any] = await transactions.verify(ref)
    assert unpaid.status is True
    assert isinstance(unpaid.data, Transaction)
    assert (unpaid.data.status, unpaid.data.amount, unpaid.data.currency) == (
        "abandoned",
        250000,
        Currency.NGN,
    )

    paid_page = await sandbox.pay(started.data.authorization_url)
    assert paid_page.status_code == 303
    paid: Response[Any] = await transactions.verify(ref)
    assert paid.status is True
    assert isinstance(paid.data, Transaction)
    assert paid.data.status == "success"
    assert paid.data.amount == 250000
    assert isinstance(paid.data.paid_at, datetime)
    assert paid.data.metadata == {"order_id": "o-lib"}
    assert paid.data.gateway_response == "Successful"
    fetched: Response[Any] = await transactions.get_transaction(str(paid.data.id))
    assert fetched.status is True
    assert isinstance(fetched.data, Transaction)
    assert fetched.data.reference == ref

    missing: Response[Any] = await transactions.verify("no-such-reference")
    assert missing.status is False
    assert missing.message == "Transaction reference not found"


async def test_banks_and_accounts(sandbox: Sandbox) -> None:
    banks: Response[Any] = await at_sandbox(AsyncMiscellaneousClient, sandbox).get_banks(
        country=Country.NIGERIA, pagination=100
    )
    assert banks.status is True
    assert banks.message == "Banks retrieved"
    assert isinstance(banks.data, list)
    assert all(isinstance(bank, Bank) for bank in banks.data)
    by_code = {bank.code: bank.name for bank in banks.data}
    assert by_code["058"] == "Guaranty Trust Bank"
    assert by_code["044"] == "Access Bank"

    verification = at_sandbox(AsyncVerificationClient, sandbox)
    resolved: Response[Any] = await verification.resolve_account_number("0123456789", "058")
    assert resolved.status is True
    assert isinstance(resolved.data, BankAccountInfo)
    assert resolved.data.account_name == account_name("0123456789")
    unresolved: Response[Any] = await verification.resolve_account_number("0000001111", "058")
    assert unresolved.status is False


async def test_recipient_transfer_and_verify(sandbox: Sandbox) -> None:
    created: Response[Any] = await at_sandbox(AsyncTransferRecipientClient, sandbox).create(
        type_=RecipientType.NUBAN,
        name="Lib Recipient",
        account_number="1122334455",
        bank_code="033",
        currency=Currency.NGN,
    )
    assert created.status is True
    assert isinstance(created.data, TransferRecipient)
    assert created.data.recipient_code.startswith("RCP_")
    assert created.data.details.bank_name == "United Bank For Africa"

    transfers = at_sandbox(AsyncTransferClient, sandbox)
    ref = reference("lib")
    initiated: Response[Any] = await transfers.initiate(
        amount=150000,
        recipient=created.data.recipient_code,
        reason="Provider payout",
        currency=Currency.NGN,
        reference=ref,
    )
    assert initiated.status is True
    assert initiated.message == "Transfer has been queued"
    assert isinstance(initiated.data, Transfer)
    assert (initiated.data.status, initiated.data.amount, initiated.data.reference) == (
        "pending",
        150000,
        ref,
    )
    assert initiated.data.transfer_code.startswith("TRF_")

    async def succeeded() -> bool:
        verified: Response[Any] = await transfers.verify(ref)
        return isinstance(verified.data, Transfer) and verified.data.status == "success"

    await eventually(succeeded, what="the transfer to succeed")
    verified: Response[Any] = await transfers.verify(ref)
    assert verified.status is True
    assert isinstance(verified.data, Transfer)
    assert isinstance(verified.data.recipient, TransferRecipient)
    assert verified.data.recipient.recipient_code == created.data.recipient_code

    duplicate: Response[Any] = await transfers.initiate(
        amount=150000, recipient=created.data.recipient_code, reason="again", reference=ref
    )
    assert duplicate.status is False


async def test_refund_and_fetch(sandbox: Sandbox) -> None:
    transactions = at_sandbox(AsyncTransactionClient, sandbox)
    started: Response[Any] = await transactions.initialize(amount=300000, email="lib@example.com")
    assert isinstance(started.data, InitTransaction)
    await sandbox.pay(started.data.authorization_url)

    refunds = at_sandbox(AsyncRefundClient, sandbox)
    created: Response[Any] = await refunds.create(
        transaction=started.data.reference,
        amount=100000,
        currency=Currency.NGN,
        merchant_note="Partly cancelled",
    )
    assert created.status is True
    assert created.message == "Refund has been queued for processing"
    assert isinstance(created.data, Refund)
    assert (created.data.status, created.data.amount) == ("pending", 100000)
    refund_id = created.data.id

    async def processed() -> bool:
        fetched: Response[Any] = await refunds.get_refund(str(refund_id))
        return isinstance(fetched.data, Refund) and fetched.data.status == "processed"

    await eventually(processed, what="the refund to be processed")
    fetched: Response[Any] = await refunds.get_refund(str(refund_id))
    assert fetched.status is True
    assert isinstance(fetched.data, Refund)
    assert fetched.data.transaction_reference == started.data.reference
    assert fetched.data.amount == 100000

    too_much: Response[Any] = await refunds.create(
        transaction=started.data.reference, amount=300000
    )
    assert too_much.status is False
