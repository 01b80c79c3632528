"""Payout accounts (a provider's bank account as a Paystack transfer recipient) and payouts
(ledger's withdrawals sent as Paystack transfers).

A transfer is created at most once per withdrawal. Its reference is the withdrawal id, and
the payout is marked `submitting` (committed) before `POST /transfer` is sent. An answer that
settles nothing (a timeout, a 5xx, `pending`, `otp`) is resolved with
`GET /transfer/verify/{reference}`, never by sending again. Only when Paystack says it has no
transfer with that reference is it sent again, under the same reference, which Paystack
itself refuses to use twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import (
    PayoutAccountAdded,
    PayoutAccountRemoved,
    PayoutFailed,
    PayoutSucceeded,
    WithdrawalRequested,
    record_event,
)
from payments.errors import (
    AccountNotResolved,
    PayoutAccountNotFound,
    PaystackDeclined,
    PaystackDown,
    UnknownBank,
)
from payments.models import Payout, PayoutAccount, PayoutStatus, WebhookEvent
from payments.paystack import Bank, PaystackRefused, PaystackUnavailable, Transfer
from payments.schemas import PayoutAccountIn
from payments.service import PRODUCER, Payments, applies_to, backoff, lease_due

log = logging.getLogger(__name__)

PAYOUTS = Counter("krika_payments_payouts_total", "Payouts by final status", ["status"])

# Paystack's transfer statuses, as ours.
_FINAL_FAILED = {"failed", "reversed", "abandoned", "blocked", "rejected"}
_OPEN = [
    PayoutStatus.requested,
    PayoutStatus.submitting,
    PayoutStatus.unknown,
    PayoutStatus.pending,
    PayoutStatus.otp,
]


# --- banks and payout accounts ---------------------------------------------------------------


class Banks:
    """Paystack's bank list for one currency, kept `ttl` seconds in memory."""

    def __init__(self, deps: Payments) -> None:
        self._deps = deps
        self._banks: list[Bank] = []
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def all(self) -> list[Bank]:
        async with self._lock:
            if time.monotonic() - self._at > self._deps.settings.banks_ttl:
                try:
                    banks = await self._deps.paystack.banks(self._deps.settings.payout_currency)
                except PaystackUnavailable as exc:
                    if not self._banks:
                        raise PaystackDown(exc.message) from exc
                    banks = self._banks  # stale beats nothing
                except PaystackRefused as exc:
                    raise PaystackDeclined(exc.message) from exc
                self._banks = [b for b in banks if b.active]
                self._at = time.monotonic()
            return self._banks

    async def find(self, code: str) -> Bank | None:
        return next((b for b in await self.all() if b.code == code), None)


async def add_payout_account(
    session: AsyncSession,
    deps: Payments,
    banks: Banks,
    provider_id: uuid.UUID,
    body: PayoutAccountIn,
) -> PayoutAccount:
    """Resolve the account's holder with the bank, make it a transfer recipient and the
    provider's payout account (replacing the previous one)."""
    bank = await banks.find(body.bank_code)
    if bank is None:
        raise UnknownBank
    paystack = deps.paystack
    try:
        resolved = await paystack.resolve_account(body.account_number, body.bank_code)
        recipient = await paystack.create_recipient(
            name=resolved.account_name,
            account_number=body.account_number,
            bank_code=body.bank_code,
            currency=deps.settings.payout_currency,
        )
    except PaystackUnavailable as exc:
        raise PaystackDown(exc.message) from exc
    except PaystackRefused as exc:
        raise AccountNotResolved(exc.message) from exc
    # One active account per provider: lock the current one (if any) and replace it.
    current = (
        await session.exec(
            select(PayoutAccount)
            .where(
                PayoutAccount.provider_id == provider_id,
                col(PayoutAccount.removed_at).is_(None),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if current is not None:
        if current.recipient_code == recipient.recipient_code:
            return current  # the same account again
        await _remove(session, current)
    account = PayoutAccount(
        provider_id=provider_id,
        bank_code=bank.code,
        bank_name=bank.name,
        account_number_last4=body.account_number[-4:],
        account_name=resolved.account_name[:200],
        currency=deps.settings.payout_currency,
        recipient_code=recipient.recipient_code,
    )
    session.add(account)
    await session.flush()
    await record_event(
        session,
        PayoutAccountAdded(
            payout_account_id=account.id,
            provider_id=provider_id,
            bank_code=account.bank_code,
            account_number_last4=account.account_number_last4,
            account_name=account.account_name,
            currency=account.currency,
            added_at=account.created_at,
        ),
        producer=PRODUCER,
    )
    return account


async def _remove(session: AsyncSession, account: PayoutAccount) -> None:
    account.removed_at = utcnow()
    await session.flush()
    await record_event(
        session,
        PayoutAccountRemoved(
            payout_account_id=account.id,
            provider_id=account.provider_id,
            removed_at=account.removed_at,
        ),
        producer=PRODUCER,
    )


async def payout_accounts(session: AsyncSession, provider_id: uuid.UUID) -> list[PayoutAccount]:
    rows = await session.exec(
        select(PayoutAccount)
        .where(PayoutAccount.provider_id == provider_id, col(PayoutAccount.removed_at).is_(None))
        .order_by(col(PayoutAccount.created_at).desc())
    )
    return list(rows.all())


async def remove_payout_account(
    session: AsyncSession, provider_id: uuid.UUID, account_id: uuid.UUID
) -> None:
    account = (
        await session.exec(
            select(PayoutAccount)
            .where(
                PayoutAccount.id == account_id,
                PayoutAccount.provider_id == provider_id,
                col(PayoutAccount.removed_at).is_(None),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if account is None:
        raise PayoutAccountNotFound
    await _remove(session, account)


# --- payouts ------------------------------------------------------------------------------------


async def withdrawal_requested(session: AsyncSession, event: WithdrawalRequested) -> None:
    """Queue the withdrawal's transfer to the provider's payout account (once per withdrawal);
    without an account it fails at once, so ledger releases the money."""
    now = utcnow()
    inserted = (
        await session.exec(
            insert(Payout)
            .values(
                withdrawal_id=event.withdrawal_id,
                provider_id=event.provider_id,
                amount=event.amount,
                currency=event.currency,
                status=PayoutStatus.requested,
                attempts=0,
                created_at=now,
                updated_at=now,
                next_check_at=now,
            )
            .on_conflict_do_nothing(index_elements=["withdrawal_id"])
            .returning(col(Payout.withdrawal_id))
        )
    ).scalar_one_or_none()
    if inserted is None:
        return
    payout = await _lock(session, event.withdrawal_id)
    account = (
        await session.exec(
            select(PayoutAccount).where(
                PayoutAccount.provider_id == event.provider_id,
                col(PayoutAccount.removed_at).is_(None),
                PayoutAccount.currency == event.currency,
            )
        )
    ).first()
    if account is None:
        await _finish(session, payout, PayoutStatus.failed, "no_payout_account")
        return
    payout.payout_account_id = account.id
    payout.recipient_code = account.recipient_code


async def _lock(session: AsyncSession, withdrawal_id: uuid.UUID) -> Payout:
    stmt = (
        select(Payout)
        .where(Payout.withdrawal_id == withdrawal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).one()


async def _finish(
    session: AsyncSession, payout: Payout, status: PayoutStatus, reason: str | None
) -> str:
    """Make the payout final, once, with its event."""
    if payout.status in (PayoutStatus.succeeded, PayoutStatus.failed):
        return f"nothing to do: payout is {payout.status}"
    now = utcnow()
    payout.status = status
    payout.updated_at = payout.finished_at = now
    payout.next_check_at = None
    payout.failure_reason = reason
    PAYOUTS.labels(status).inc()
    if status == PayoutStatus.succeeded:
        event: PayoutSucceeded | PayoutFailed = PayoutSucceeded(
            withdrawal_id=payout.withdrawal_id,
            provider_id=payout.provider_id,
            amount=payout.amount,
            currency=payout.currency,
            transfer_code=payout.transfer_code,
            paid_at=now,
        )
    else:
        log.warning("payout %s failed: %s", payout.withdrawal_id, reason)
        event = PayoutFailed(
            withdrawal_id=payout.withdrawal_id,
            provider_id=payout.provider_id,
            amount=payout.amount,
            currency=payout.currency,
            reason=reason or "failed",
            failed_at=now,
        )
    await record_event(session, event, producer=PRODUCER)
    return f"payout {status}"


async def apply_transfer(
    session: AsyncSession, deps: Payments, payout: Payout, transfer: Transfer
) -> str:
    """Move a (locked) payout to what Paystack says of its transfer."""
    if payout.status in (PayoutStatus.succeeded, PayoutStatus.failed):
        return f"nothing to do: payout is {payout.status}"
    if transfer.amount != payout.amount or transfer.currency.upper() != payout.currency:
        log.error(
            "payout %s: Paystack's transfer is %s %s, ours %s %s",
            payout.withdrawal_id,
            transfer.amount,
            transfer.currency,
            payout.amount,
            payout.currency,
        )
    payout.transfer_code = transfer.transfer_code or payout.transfer_code
    payout.updated_at = utcnow()
    if transfer.status == "success":
        return await _finish(session, payout, PayoutStatus.succeeded, None)
    if transfer.status in _FINAL_FAILED:
        return await _finish(session, payout, PayoutStatus.failed, f"transfer {transfer.status}")
    payout.status = PayoutStatus.otp if transfer.status == "otp" else PayoutStatus.pending
    payout.attempts += 1
    payout.next_check_at = utcnow() + backoff(
        deps.settings.followup_after, payout.attempts, deps.settings.reconcile_max_interval
    )
    return f"transfer still {transfer.status}"


async def submit_payouts(deps: Payments, *, limit: int) -> int:
    """Send queued transfers and resolve the ones whose outcome is not known yet."""
    claimed: list[Payout] = await lease_due(deps, Payout, list(_OPEN), limit)
    for payout in claimed:
        if payout.status == PayoutStatus.requested:
            await _send(deps, payout)
        else:
            await _verify(deps, payout)
    return len(claimed)


async def _send(deps: Payments, claimed: Payout) -> None:
    async with deps.sessionmaker() as session, session.begin():
        payout = await _lock(session, claimed.withdrawal_id)
        if payout.status != PayoutStatus.requested:
            return
        if payout.recipient_code is None:
            await _finish(session, payout, PayoutStatus.failed, "no_payout_account")
            return
        payout.status = PayoutStatus.submitting
        payout.attempts += 1
        payout.updated_at = utcnow()
        recipient = payout.recipient_code
    answer: Transfer | None = None
    refused: PaystackRefused | None = None
    try:
        answer = await deps.paystack.transfer(
            amount=claimed.amount,
            currency=claimed.currency,
            recipient=recipient,
            reference=claimed.reference,
            reason="Krika payout",
        )
    except PaystackRefused as exc:
        refused = exc
    except PaystackUnavailable as exc:
        log.warning("payout %s: no answer from Paystack (%s)", claimed.withdrawal_id, exc.message)
    async with deps.sessionmaker() as session, session.begin():
        payout = await _lock(session, claimed.withdrawal_id)
        if payout.status != PayoutStatus.submitting:
            return  # a webhook settled it meanwhile
        if answer is not None:
            await apply_transfer(session, deps, payout, answer)
        elif refused is not None and not _duplicate_reference(refused.message):
            await _finish(session, payout, PayoutStatus.failed, f"refused: {refused.message}")
        else:
            # No answer, or "duplicate reference" (an earlier send got through): ask Paystack.
            payout.status = PayoutStatus.unknown
            payout.updated_at = utcnow()
            payout.next_check_at = utcnow() + backoff(
                deps.settings.webhook_retry_base, payout.attempts, deps.settings.webhook_retry_max
            )


def _duplicate_reference(message: str) -> bool:
    """Paystack's answer to a reference used before ("Please provide a unique reference.
    Reference already exists on a transfer")."""
    text = message.lower()
    return "already exists" in text or "duplicate" in text or "unique reference" in text


async def _verify(deps: Payments, claimed: Payout) -> None:
    transfer: Transfer | None = None
    missing = False
    try:
        transfer = await deps.paystack.verify_transfer(claimed.reference)
    except PaystackRefused as exc:
        missing = exc.not_found
        if not missing:
            log.warning("payout %s: verify refused (%s)", claimed.withdrawal_id, exc.message)
    except PaystackUnavailable as exc:
        log.warning("payout %s: verify unavailable (%s)", claimed.withdrawal_id, exc.message)
    async with deps.sessionmaker() as session, session.begin():
        payout = await _lock(session, claimed.withdrawal_id)
        if payout.status in (PayoutStatus.succeeded, PayoutStatus.failed):
            return
        if transfer is not None:
            await apply_transfer(session, deps, payout, transfer)
            return
        if missing and payout.status in (PayoutStatus.submitting, PayoutStatus.unknown):
            # Paystack never got it: sending it now cannot make a second transfer.
            payout.status = PayoutStatus.requested
            payout.next_check_at = utcnow()
            return
        payout.attempts += 1
        payout.next_check_at = utcnow() + backoff(
            deps.settings.webhook_retry_base, payout.attempts, deps.settings.reconcile_max_interval
        )


@applies_to("transfer.success", "transfer.failed", "transfer.reversed")
async def _transfer_webhook(
    session: AsyncSession, deps: Payments, row: WebhookEvent, data: dict[str, Any]
) -> str:
    reference = data.get("reference")
    try:
        withdrawal_id = uuid.UUID(str(reference))
    except ValueError:
        return "ignored: not one of our transfer references"
    if await session.get(Payout, withdrawal_id) is None:
        return "ignored: no payout of ours has this reference"
    try:
        transfer = await deps.paystack.verify_transfer(str(withdrawal_id))
    except PaystackRefused as exc:
        return f"not believed: verify refused ({exc.message})"
    payout = await _lock(session, withdrawal_id)
    return await apply_transfer(session, deps, payout, transfer)


async def open_payouts(session: AsyncSession, *, status: str | None, limit: int) -> list[Payout]:
    """Payouts for admins: by default every one not final, oldest first."""
    stmt = select(Payout)
    stmt = (
        stmt.where(col(Payout.status).in_(_OPEN))
        if status is None
        else stmt.where(Payout.status == status)
    )
    rows = await session.exec(stmt.order_by(col(Payout.created_at)).limit(limit))
    return list(rows.all())
