"""Payments use cases: payables from orders' events, checkout, webhooks, verification,
reconciliation and refunds. Payout accounts and payouts are in payments.payouts.

Nothing is believed from a webhook alone: a webhook is stored (its signature checked on the raw
body first) and then *processed*: Paystack is asked (`GET /transaction/verify`, `GET /refund`,
`GET /transfer/verify`) and only that answer, compared with our record, moves our state.

Locks are always taken in one order — payable, then payment, then refund — by checkout, by
webhook processing and by reconciliation alike, so they serialise instead of deadlocking. A
locking read always refreshes what the session holds (`populate_existing`): a row read before
the lock may have changed before it was granted.
Use cases called from requests or handlers flush and never commit; the worker's loops
(`reconcile_payments`, `submit_refunds`, `process_due_webhooks`) own their transactions, since
they must commit before and after calling Paystack.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import (
    OrderCancelled,
    OrderPlaced,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    UserRegistered,
    record_event,
)
from payments.config import Settings
from payments.errors import (
    InvalidSignature,
    MalformedWebhook,
    OrderAlreadyPaid,
    OrderNotFound,
    OrderNotPayable,
    OrderNotReady,
    PaymentNotFound,
    PaystackDeclined,
    PaystackDown,
)
from payments.models import (
    Payable,
    Payer,
    Payment,
    PaymentStatus,
    Payout,
    Refund,
    RefundStatus,
    WebhookEvent,
)
from payments.paystack import (
    Paystack,
    PaystackRefused,
    PaystackUnavailable,
    Transaction,
    webhook_signature_ok,
)
from payments.paystack import Refund as PaystackRefund

PRODUCER = "payments"
log = logging.getLogger(__name__)

WEBHOOKS = Counter(
    "krika_payments_webhooks_total",
    "Webhooks received: accepted (stored), duplicate, bad_signature, malformed",
    ["outcome"],
)
PAYMENTS = Counter(
    "krika_payments_payments_total",
    "Payments reaching a final status (succeeded, failed, duplicate, mismatch)",
    ["outcome"],
)
REFUNDS = Counter("krika_payments_refunds_total", "Refunds by final status", ["status"])

# A stored webhook that cannot be processed (Paystack unreachable, a bug) is tried this many
# times (with backoff), then recorded as given up, visible with its last error.
WEBHOOK_MAX_ATTEMPTS = 25

Session = AsyncSession
Sessionmaker = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Payments:
    """What the use cases need besides a session; built once per process."""

    settings: Settings
    paystack: Paystack
    sessionmaker: Sessionmaker


def new_reference() -> str:
    """Our transaction reference: unique, no personal data, `krk-` + 24 hex digits (Paystack
    allows only letters, digits, `-`, `.` and `=`)."""
    return "krk-" + secrets.token_hex(12)


def backoff(base: float, attempt: int, cap: float) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** min(attempt, 30)))


# --- events in ------------------------------------------------------------------------------


async def payer_registered(session: Session, event: UserRegistered) -> None:
    stmt = insert(Payer).values(user_id=event.user_id, email=event.email, updated_at=utcnow())
    await session.exec(
        stmt.on_conflict_do_update(
            index_elements=[col(Payer.user_id)],
            set_={"email": stmt.excluded.email, "updated_at": stmt.excluded.updated_at},
        )
    )


async def order_placed(session: Session, event: OrderPlaced) -> None:
    stmt = insert(Payable).values(
        order_id=event.order_id,
        customer_id=event.customer_id,
        provider_id=event.provider_id,
        title=event.title[:200],
        amount=event.price,
        currency=event.currency,
        placed_at=event.placed_at,
        created_at=utcnow(),
    )
    await session.exec(stmt.on_conflict_do_nothing(index_elements=["order_id"]))


async def order_cancelled(session: Session, event: OrderCancelled) -> None:
    """The order will not be worked on: no new checkout; if it was paid, one refund."""
    payable = await _lock_payable(session, event.order_id)
    if payable is None:
        log.warning("order %s cancelled before payments knew of it", event.order_id)
        return
    if payable.cancelled_at is None:
        payable.cancelled_at = event.cancelled_at
    if not event.paid:
        return
    if payable.paid_by is None:
        # orders only marks an order paid on our payment_succeeded, which we commit with paid_by.
        log.error("order %s cancelled as paid, but no payment of ours paid it", event.order_id)
        return
    payment = await _lock_payment(session, payable.paid_by)
    await _request_refund(session, payment, "order cancelled")


async def _request_refund(session: Session, payment: Payment, why: str) -> None:
    """One refund per payment (unique): a redelivered cancellation adds nothing."""
    now = utcnow()
    stmt = insert(Refund).values(
        id=uuid.uuid4(),
        payment_id=payment.id,
        order_id=payment.order_id,
        customer_id=payment.customer_id,
        reference=payment.reference,
        amount=payment.captured_amount or payment.amount,
        currency=payment.currency,
        status=RefundStatus.requested,
        attempts=0,
        created_at=now,
        updated_at=now,
        next_check_at=now,
    )
    result = await session.exec(stmt.on_conflict_do_nothing(index_elements=["payment_id"]))
    if result.rowcount:
        log.info("refund requested for payment %s (%s)", payment.reference, why)


# --- checkout -------------------------------------------------------------------------------


async def _lock_payable(session: Session, order_id: uuid.UUID) -> Payable | None:
    # FOR NO KEY UPDATE: serialises changes to the payable without blocking inserts of
    # payments that reference it (they take FOR KEY SHARE).
    stmt = (
        select(Payable)
        .where(Payable.order_id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).first()


async def _lock_payment(session: Session, payment_id: uuid.UUID) -> Payment:
    stmt = (
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).one()


async def checkout(
    session: Session, deps: Payments, user_id: uuid.UUID, order_id: uuid.UUID
) -> Payment:
    """A Paystack transaction for the caller's order: the pending one if there is one, else a
    new one, its reference committed before Paystack is called."""
    payable = await _lock_payable(session, order_id)
    if payable is None:
        raise OrderNotReady
    if payable.customer_id != user_id:
        raise OrderNotFound
    if payable.paid_by is not None:
        raise OrderAlreadyPaid
    if payable.cancelled_at is not None:
        raise OrderNotPayable
    open_payment = (
        await session.exec(
            select(Payment)
            .where(
                Payment.order_id == order_id,
                col(Payment.status).in_([PaymentStatus.initializing, PaymentStatus.pending]),
            )
            .order_by(col(Payment.created_at).desc())
            .limit(1)
        )
    ).first()
    if open_payment is not None and open_payment.status == PaymentStatus.pending:
        return open_payment
    for _ in range(2):
        if open_payment is None:
            open_payment = await _store_new_payment(deps, payable)
        try:
            initialized = await deps.paystack.initialize(
                email=await _payer_email(session, user_id),
                amount=open_payment.amount,
                currency=open_payment.currency,
                reference=open_payment.reference,
                callback_url=_callback_url(deps.settings, order_id),
                metadata={"order_id": str(order_id), "payment_id": str(open_payment.id)},
            )
        except PaystackUnavailable as exc:
            # Our reference stays stored ("initializing"): a retry asks again with it, and
            # reconciliation settles it if Paystack did take it.
            raise PaystackDown(exc.message) from exc
        except PaystackRefused as exc:
            await _fail_unsent(deps, open_payment.id, exc.message)
            if "duplicate" in exc.message.lower():
                # An earlier attempt with this reference reached Paystack, but its answer
                # never reached us: that URL is lost, so start over with a new reference.
                open_payment = None
                continue
            raise PaystackDeclined(exc.message) from exc
        break
    else:  # pragma: no cover - two duplicates in a row: new references cannot collide
        raise PaystackDown("Paystack refused two fresh references")
    payment = await _lock_payment(session, open_payment.id)
    payment.access_code = initialized.access_code
    payment.authorization_url = initialized.authorization_url
    payment.updated_at = utcnow()
    if payment.status == PaymentStatus.initializing:
        payment.status = PaymentStatus.pending
    # else the payment was already settled by its webhook while we waited: answer it anyway.
    await session.flush()
    return payment


async def _store_new_payment(deps: Payments, payable: Payable) -> Payment:
    """Commit our reference in its own transaction before Paystack hears of it: a webhook or a
    verify for it then always finds it, whatever happens to the request."""
    now = utcnow()
    payment = Payment(
        reference=new_reference(),
        order_id=payable.order_id,
        customer_id=payable.customer_id,
        amount=payable.amount,
        currency=payable.currency,
        status=PaymentStatus.initializing,
        created_at=now,
        updated_at=now,
        next_check_at=now + timedelta(seconds=deps.settings.reconcile_after),
    )
    async with deps.sessionmaker() as own, own.begin():
        own.add(payment)
    return payment


async def _fail_unsent(deps: Payments, payment_id: uuid.UUID, reason: str) -> None:
    async with deps.sessionmaker() as own, own.begin():
        await own.exec(
            update(Payment)
            .where(
                col(Payment.id) == payment_id,
                col(Payment.status) == PaymentStatus.initializing,
            )
            .values(
                status=PaymentStatus.failed,
                failure_reason=f"initialize refused: {reason}"[:500],
                next_check_at=None,
                updated_at=utcnow(),
            )
        )


async def _payer_email(session: Session, user_id: uuid.UUID) -> str:
    payer = await session.get(Payer, user_id)
    if payer is not None:
        return payer.email
    # identity's user_registered not received (yet): Paystack needs an address; this one is
    # reserved (RFC 2606) and reaches nobody.
    log.warning("no e-mail address known for user %s: using a placeholder", user_id)
    return f"{user_id}@customers.krika.invalid"


def _callback_url(settings: Settings, order_id: uuid.UUID) -> str | None:
    if not settings.checkout_callback_url:
        return None
    return settings.checkout_callback_url.replace("{order_id}", str(order_id))


async def get_payment(session: Session, reference: str, user_id: uuid.UUID, admin: bool) -> Payment:
    payment = (await session.exec(select(Payment).where(Payment.reference == reference))).first()
    if payment is None or (payment.customer_id != user_id and not admin):
        raise PaymentNotFound
    return payment


def public_status(payment: Payment) -> str:
    return PaymentStatus.pending if payment.status == PaymentStatus.initializing else payment.status


# --- webhooks -------------------------------------------------------------------------------


def _subject(event: str, data: dict[str, Any]) -> str:
    """What a webhook is about: the transaction's or transfer's reference (a refund's is its
    transaction's), else Paystack's id."""
    for key in ("reference", "transaction_reference", "transfer_code", "id"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)[:200]
    return ""


async def receive_webhook(
    session: Session, settings: Settings, raw: bytes, signatures: list[str]
) -> int | None:
    """Check the signature on the raw bytes, store the event (once): its id, or None for a
    redelivery of one already stored."""
    if len(signatures) != 1 or not webhook_signature_ok(
        settings.paystack_secret_key, raw, signatures[0]
    ):
        WEBHOOKS.labels("bad_signature").inc()
        raise InvalidSignature
    try:
        body = json.loads(raw)
        event, data = body["event"], body["data"]
        if (
            not isinstance(event, str)
            or not event
            or len(event) > 100
            or not isinstance(data, dict)
        ):
            raise TypeError("not an event")
    except (ValueError, TypeError, KeyError) as exc:
        WEBHOOKS.labels("malformed").inc()
        raise MalformedWebhook from exc
    subject = _subject(event, data)
    status = data.get("status")
    dedupe = f"{event}|{subject}|{status if isinstance(status, str) else ''}"[:300]
    now = utcnow()
    stmt = (
        insert(WebhookEvent)
        .values(
            dedupe_key=dedupe,
            event=event,
            reference=subject or None,
            body=raw.decode("utf-8", errors="replace"),
            received_at=now,
            attempts=0,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(col(WebhookEvent.id))
    )
    stored = (await session.exec(stmt)).scalar_one_or_none()
    WEBHOOKS.labels("accepted" if stored is not None else "duplicate").inc()
    return stored


# What processes each kind of webhook (payouts registers the transfer.* ones).
WebhookApplier = Callable[[Session, Payments, WebhookEvent, dict[str, Any]], Awaitable[str]]
WEBHOOK_APPLIERS: dict[str, WebhookApplier] = {}


def applies_to(*events: str) -> Callable[[WebhookApplier], WebhookApplier]:
    def register(fn: WebhookApplier) -> WebhookApplier:
        for event in events:
            WEBHOOK_APPLIERS[event] = fn
        return fn

    return register


async def process_webhook(deps: Payments, webhook_id: int) -> None:
    """Process one stored webhook unless another process holds it or it is done: ask Paystack,
    apply, mark processed — or, when Paystack cannot answer, schedule another attempt."""
    async with deps.sessionmaker() as session, session.begin():
        row = (
            await session.exec(
                select(WebhookEvent)
                .where(WebhookEvent.id == webhook_id, col(WebhookEvent.processed_at).is_(None))
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            return
        applier = WEBHOOK_APPLIERS.get(row.event)
        try:
            async with session.begin_nested():
                if applier is None:
                    outcome = f"ignored: {row.event} is not an event payments acts on"
                else:
                    outcome = await applier(session, deps, row, json.loads(row.body)["data"])
        except Exception as exc:
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            if row.attempts >= WEBHOOK_MAX_ATTEMPTS:
                row.processed_at = utcnow()
                row.outcome = f"gave up after {row.attempts} attempts"
                log.error("webhook %s (%s): gave up: %s", row.id, row.event, row.last_error)
                return
            row.next_attempt_at = utcnow() + backoff(
                deps.settings.webhook_retry_base, row.attempts, deps.settings.webhook_retry_max
            )
            if not isinstance(exc, PaystackUnavailable):
                log.exception("webhook %s (%s) failed", row.id, row.event)
            return
        row.processed_at = utcnow()
        row.outcome = outcome[:1000]
        log.info("webhook %s %s %s: %s", row.id, row.event, row.reference, outcome)


async def process_due_webhooks(deps: Payments, *, limit: int) -> int:
    """The safety net for the API's immediate processing: every stored webhook not processed
    and due (its process died, or Paystack was unreachable) is processed again."""
    async with deps.sessionmaker() as session:
        due = (
            await session.exec(
                select(WebhookEvent.id)
                .where(
                    col(WebhookEvent.processed_at).is_(None),
                    col(WebhookEvent.next_attempt_at) <= utcnow(),
                )
                .order_by(col(WebhookEvent.next_attempt_at))
                .limit(limit)
            )
        ).all()
    for webhook_id in due:
        if webhook_id is not None:
            await process_webhook(deps, webhook_id)
    return len(due)


@applies_to("charge.success")
async def _charge_webhook(
    session: Session, deps: Payments, row: WebhookEvent, data: dict[str, Any]
) -> str:
    reference = data.get("reference")
    if not isinstance(reference, str):
        return "ignored: no reference"
    payment = (await session.exec(select(Payment).where(Payment.reference == reference))).first()
    if payment is None:
        return "ignored: not one of our references"
    try:
        transaction = await deps.paystack.verify(reference)
    except PaystackRefused as exc:
        return f"not believed: verify refused ({exc.message})"
    return await apply_transaction(session, deps, payment.order_id, payment.id, transaction)


async def apply_transaction(
    session: Session,
    deps: Payments,
    order_id: uuid.UUID,
    payment_id: uuid.UUID,
    transaction: Transaction,
) -> str:
    """Move a payment to what Paystack's verify says, checked against our record."""
    payable = await _lock_payable(session, order_id)
    payment = await _lock_payment(session, payment_id)
    if payable is None or payment.status in (PaymentStatus.succeeded, PaymentStatus.refunded):
        return f"nothing to do: payment is {payment.status}"
    now = utcnow()
    payment.updated_at = now
    payment.paystack_id = transaction.id
    if transaction.status == "success":
        payment.captured_amount = transaction.amount
        payment.next_check_at = None
        if transaction.amount != payment.amount or transaction.currency.upper() != payment.currency:
            # Paystack captured something else than what we asked for: not this order's payment.
            payment.status = PaymentStatus.failed
            payment.failure_reason = (
                f"amount_mismatch: Paystack captured {transaction.amount} {transaction.currency}, "
                f"the order costs {payment.amount} {payment.currency}"
            )
            PAYMENTS.labels("mismatch").inc()
            log.error("payment %s not believed: %s", payment.reference, payment.failure_reason)
            await _payment_failed(session, payment, "amount_mismatch")
            return "not believed: amount or currency differs from the order's"
        payment.status = PaymentStatus.succeeded
        payment.paid_at = transaction.paid_at or now
        # A second payment for a paid order (two checkouts both paid) is announced as well -
        # the money was captured; orders notes it, ledger books it as owed to the customer -
        # and given back.
        duplicate = payable.paid_by is not None
        if not duplicate:
            payable.paid_by = payment.id
        PAYMENTS.labels("duplicate" if duplicate else "succeeded").inc()
        await record_event(
            session,
            PaymentSucceeded(
                payment_id=payment.id,
                order_id=payment.order_id,
                customer_id=payment.customer_id,
                reference=payment.reference,
                amount=payment.amount,
                currency=payment.currency,
                paid_at=payment.paid_at,
            ),
            producer=PRODUCER,
        )
        if duplicate:
            await session.flush()
            await _request_refund(session, payment, "the order was paid already")
            return "duplicate payment for a paid order: refund requested"
        return "payment succeeded"
    if transaction.status in ("failed", "reversed"):
        if payment.status != PaymentStatus.failed:
            payment.status = PaymentStatus.failed
            payment.failure_reason = transaction.gateway_response or transaction.status
            payment.next_check_at = None
            PAYMENTS.labels("failed").inc()
            await _payment_failed(session, payment, payment.failure_reason)
        return f"payment {transaction.status}"
    return f"still {transaction.status}"


async def _payment_failed(session: Session, payment: Payment, reason: str | None) -> None:
    await record_event(
        session,
        PaymentFailed(
            payment_id=payment.id,
            order_id=payment.order_id,
            customer_id=payment.customer_id,
            reference=payment.reference,
            reason=reason,
            failed_at=utcnow(),
        ),
        producer=PRODUCER,
    )


# --- reconciliation ---------------------------------------------------------------------------


async def lease_due(
    deps: Payments,
    model: type[Payment] | type[Refund] | type[Payout],
    statuses: list[str],
    limit: int,
) -> list[Any]:
    """Claim up to `limit` rows due for a check: push their `next_check_at` a lease ahead (so
    no other worker takes them meanwhile) and commit; the rows as they were claimed."""
    now = utcnow()
    lease = now + timedelta(seconds=max(60.0, deps.settings.paystack_timeout * 4))
    async with deps.sessionmaker() as session, session.begin():
        rows = list(
            (
                await session.exec(
                    select(model)
                    .where(
                        col(model.next_check_at) <= now,
                        col(model.status).in_(statuses),
                    )
                    .order_by(col(model.next_check_at))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        for row in rows:
            row.next_check_at = lease
    return rows


async def reconcile_payments(deps: Payments, *, limit: int) -> int:
    """Verify payments Paystack has not told us about (lost webhooks, lost answers)."""
    settings = deps.settings
    claimed: list[Payment] = await lease_due(
        deps, Payment, [PaymentStatus.initializing, PaymentStatus.pending], limit
    )
    for payment in claimed:
        try:
            transaction = await deps.paystack.verify(payment.reference)
        except PaystackUnavailable:
            transaction = None
        except PaystackRefused as exc:
            if not exc.not_found:
                raise
            transaction = None
        async with deps.sessionmaker() as session, session.begin():
            if transaction is not None:
                await apply_transaction(session, deps, payment.order_id, payment.id, transaction)
            current = await _lock_payment(session, payment.id)
            if current.status not in (PaymentStatus.initializing, PaymentStatus.pending):
                continue
            age = (utcnow() - current.created_at).total_seconds()
            if age >= settings.reconcile_give_up:
                current.status = PaymentStatus.failed
                current.failure_reason = "abandoned: never paid"
                current.next_check_at = None
                current.updated_at = utcnow()
                PAYMENTS.labels("failed").inc()
                await _payment_failed(session, current, "abandoned")
                continue
            current.checks += 1
            current.next_check_at = utcnow() + backoff(
                settings.reconcile_after, current.checks - 1, settings.reconcile_max_interval
            )
    return len(claimed)


# --- refunds ----------------------------------------------------------------------------------


async def submit_refunds(deps: Payments, *, limit: int) -> int:
    """Send requested refunds to Paystack, and follow up on those it has not settled."""
    claimed: list[Refund] = await lease_due(
        deps,
        Refund,
        [RefundStatus.requested, RefundStatus.submitting, RefundStatus.pending],
        limit,
    )
    for refund in claimed:
        if refund.status == RefundStatus.pending:
            await _follow_up_refund(deps, refund)
        else:
            await _send_refund(deps, refund)
    return len(claimed)


async def _send_refund(deps: Payments, refund: Refund) -> None:
    async with deps.sessionmaker() as session, session.begin():
        row = await session.get(Refund, refund.id, with_for_update=True, populate_existing=True)
        if row is None or row.status not in (RefundStatus.requested, RefundStatus.submitting):
            return
        row.status = RefundStatus.submitting
        row.attempts += 1
        row.updated_at = utcnow()
    answer: PaystackRefund | None = None
    refused: PaystackRefused | None = None
    try:
        answer = await deps.paystack.refund(
            reference=refund.reference,
            amount=refund.amount,
            currency=refund.currency,
            note=f"Krika order {refund.order_id}",
        )
    except PaystackRefused as exc:
        refused = exc
    except PaystackUnavailable as exc:
        log.warning("refund %s: Paystack unavailable (%s); will retry", refund.id, exc.message)
    async with deps.sessionmaker() as session, session.begin():
        row = await _lock_refund(session, refund.id)
        if answer is not None and row.paystack_id is None:
            row.paystack_id = answer.id
        if row.status != RefundStatus.submitting:
            return  # its webhook got here first and moved it on
        now = utcnow()
        row.updated_at = now
        if answer is not None:
            row.status = RefundStatus.pending
            row.next_check_at = now + timedelta(seconds=deps.settings.followup_after)
            await _apply_refund_status(session, row, answer.status, None)
        elif refused is not None and _already_refunded(refused.message):
            # An earlier attempt reached Paystack (its answer was lost): its webhook settles it.
            row.status = RefundStatus.pending
            row.next_check_at = now + timedelta(seconds=deps.settings.followup_after)
        elif refused is not None and "balance" not in refused.message.lower():
            row.next_check_at = None
            await _refund_failed(session, row, f"refused: {refused.message}")
        else:
            # Unclear whether Paystack took it, or our balance cannot cover it yet: sending
            # again later is safe, as Paystack refuses to refund more than was paid (answered
            # "Transaction has been fully reversed", taken as "already refunded" above).
            row.status = RefundStatus.requested
            row.next_check_at = now + backoff(
                deps.settings.webhook_retry_base, row.attempts, deps.settings.webhook_retry_max
            )


def _already_refunded(message: str) -> bool:
    text = message.lower()
    return "fully" in text or "already" in text or "reversed" in text


async def _follow_up_refund(deps: Payments, refund: Refund) -> None:
    answer: PaystackRefund | None = None
    if refund.paystack_id is not None:
        try:
            answer = await deps.paystack.get_refund(refund.paystack_id)
        except (PaystackUnavailable, PaystackRefused) as exc:
            log.warning("refund %s: follow-up failed (%s)", refund.id, exc.message)
    async with deps.sessionmaker() as session, session.begin():
        row = await _lock_refund(session, refund.id)
        if row.status != RefundStatus.pending:
            return
        row.attempts += 1
        row.next_check_at = utcnow() + backoff(
            deps.settings.followup_after, row.attempts, deps.settings.reconcile_max_interval
        )
        if answer is not None:
            await _apply_refund_status(session, row, answer.status, None)


async def _lock_refund(session: Session, refund_id: uuid.UUID) -> Refund:
    """The refund, locked after its payment (the lock order: payable, payment, refund)."""
    payment_id = await session.scalar(select(Refund.payment_id).where(Refund.id == refund_id))
    if payment_id is None:
        raise LookupError(f"no refund {refund_id}")
    await _lock_payment(session, payment_id)
    return (
        await session.exec(
            select(Refund)
            .where(Refund.id == refund_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


@applies_to("refund.pending", "refund.processing", "refund.processed", "refund.failed")
async def _refund_webhook(
    session: Session, deps: Payments, row: WebhookEvent, data: dict[str, Any]
) -> str:
    reference = data.get("transaction_reference") or data.get("reference")
    if not isinstance(reference, str):
        return "ignored: no transaction reference"
    refund = (await session.exec(select(Refund).where(Refund.reference == reference))).first()
    if refund is None:
        return "ignored: no refund of ours for this transaction"
    paystack_id = refund.paystack_id
    if paystack_id is None and str(data.get("id", "")).isdigit():
        # Paystack's refund webhooks give the refund's id as a string.
        paystack_id = int(str(data["id"]))
    if paystack_id is None:
        return "not believed: no refund id to verify with"
    answer = await deps.paystack.get_refund(paystack_id)
    locked = await _lock_refund(session, refund.id)
    locked.paystack_id = answer.id
    return await _apply_refund_status(session, locked, answer.status, None)


async def _apply_refund_status(
    session: Session, refund: Refund, status: str, reason: str | None
) -> str:
    if refund.status in (RefundStatus.processed, RefundStatus.failed):
        return f"nothing to do: refund is {refund.status}"
    refund.updated_at = utcnow()
    if status == "processed":
        refund.status = RefundStatus.processed
        refund.processed_at = utcnow()
        refund.next_check_at = None
        payment = await _lock_payment(session, refund.payment_id)
        payment.status = PaymentStatus.refunded
        payment.updated_at = utcnow()
        REFUNDS.labels("processed").inc()
        await record_event(
            session,
            RefundSucceeded(
                refund_id=refund.id,
                order_id=refund.order_id,
                customer_id=refund.customer_id,
                reference=refund.reference,
                amount=refund.amount,
                currency=refund.currency,
                refunded_at=refund.processed_at,
            ),
            producer=PRODUCER,
        )
        return "refund processed"
    if status == "failed":
        refund.next_check_at = None
        await _refund_failed(session, refund, reason or "Paystack could not refund it")
        return "refund failed"
    if refund.status != RefundStatus.pending:
        refund.status = RefundStatus.pending
    return f"refund still {status}"


async def _refund_failed(session: Session, refund: Refund, reason: str) -> None:
    refund.status = RefundStatus.failed
    refund.failure_reason = reason[:500]
    refund.updated_at = utcnow()
    REFUNDS.labels("failed").inc()
    log.error("refund %s of payment %s failed: %s", refund.id, refund.reference, reason)
    await record_event(
        session,
        RefundFailed(
            refund_id=refund.id,
            order_id=refund.order_id,
            customer_id=refund.customer_id,
            reference=refund.reference,
            amount=refund.amount,
            currency=refund.currency,
            reason=reason[:500],
            failed_at=utcnow(),
        ),
        producer=PRODUCER,
    )
