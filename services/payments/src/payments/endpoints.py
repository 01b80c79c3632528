"""Payments routes: parse, authorise, call the use case, answer.

The webhook is the one public route: Paystack's signature (HMAC-SHA512 of the raw body with
our secret key) is its authentication. Everything else needs a token: checkout and a payment
are the order's customer's (an admin reads any payment); payout accounts are the provider's
own; anyone else gets 404, as for something that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response, status

from krika_common.auth import CurrentUser, Principal, require_role
from krika_common.db import SessionDep
from krika_common.errors import responses
from krika_common.idempotency import IDEMPOTENCY_ERRORS, IdempotencyKeyHeader, idempotent
from krika_common.pagination import Page
from payments import payouts, service
from payments.errors import (
    AccountNotResolved,
    InvalidSignature,
    MalformedWebhook,
    OrderAlreadyPaid,
    OrderNotFound,
    OrderNotPayable,
    OrderNotReady,
    PaymentNotFound,
    PayoutAccountNotFound,
    PaystackDeclined,
    PaystackDown,
    UnknownBank,
)
from payments.models import Payment, PayoutAccount, PayoutStatus
from payments.schemas import (
    BankOut,
    CheckoutIn,
    CheckoutOut,
    PaymentOut,
    PayoutAccountIn,
    PayoutAccountOut,
    PayoutOut,
)
from payments.service import Payments


def get_payments(request: Request) -> Payments:
    found: Payments = request.app.state.payments
    return found


def get_banks(request: Request) -> payouts.Banks:
    found: payouts.Banks = request.app.state.banks
    return found


PaymentsDep = Annotated[Payments, Depends(get_payments)]
BanksDep = Annotated[payouts.Banks, Depends(get_banks)]
CustomerDep = Annotated[Principal, Depends(require_role("customer"))]
ProviderDep = Annotated[Principal, Depends(require_role("provider"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
Reference = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.=-]+$")]

payments = APIRouter(prefix="/payments", tags=["payments"])


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut.model_validate(
        {
            "reference": payment.reference,
            "order_id": payment.order_id,
            "status": service.public_status(payment),
            "amount": payment.amount,
            "currency": payment.currency,
            "paid_at": payment.paid_at,
            "created_at": payment.created_at,
        }
    )


@payments.post(
    "/checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckoutOut,
    responses=responses(
        *IDEMPOTENCY_ERRORS,
        OrderNotFound,
        OrderNotReady,
        OrderAlreadyPaid,
        OrderNotPayable,
        PaystackDeclined,
        PaystackDown,
    ),
)
async def checkout(
    body: CheckoutIn,
    request: Request,
    user: CustomerDep,
    session: SessionDep,
    deps: PaymentsDep,
    _key: IdempotencyKeyHeader = None,
) -> Response:
    """Customer: pay for your order on Paystack (`Idempotency-Key` required). Send the customer
    to `authorization_url`; while a payment is pending, checking out again answers it again."""

    async def run() -> CheckoutOut:
        payment = await service.checkout(session, deps, user.id, body.order_id)
        return CheckoutOut(
            reference=payment.reference,
            authorization_url=payment.authorization_url or "",
            access_code=payment.access_code or "",
            amount=payment.amount,
            currency=payment.currency,
            order_id=payment.order_id,
        )

    return await idempotent(request, session, scope=str(user.id), body=body, run=run)


@payments.get(
    "/banks", response_model=Page[BankOut], responses=responses(PaystackDown, PaystackDeclined)
)
async def banks(_user: CurrentUser, found: BanksDep) -> Page[BankOut]:
    """The banks a payout account can be in (Paystack's list for the platform currency)."""
    return Page(items=[BankOut(code=b.code, name=b.name) for b in await found.all()])


@payments.post(
    "/payout-accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=PayoutAccountOut,
    responses=responses(UnknownBank, AccountNotResolved, PaystackDown, PaystackDeclined),
)
async def add_payout_account(
    body: PayoutAccountIn,
    user: ProviderDep,
    session: SessionDep,
    deps: PaymentsDep,
    found: BanksDep,
) -> PayoutAccount:
    """Provider: the bank account your withdrawals go to (it replaces the previous one). The
    bank confirms the account and tells its holder's name."""
    return await payouts.add_payout_account(session, deps, found, user.id, body)


@payments.get("/payout-accounts", response_model=Page[PayoutAccountOut])
async def list_payout_accounts(user: ProviderDep, session: SessionDep) -> Page[PayoutAccount]:
    """Provider: your payout account (at most one)."""
    return Page(items=await payouts.payout_accounts(session, user.id))


@payments.delete(
    "/payout-accounts/{account_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(PayoutAccountNotFound),
)
async def remove_payout_account(
    account_id: uuid.UUID, user: ProviderDep, session: SessionDep
) -> Response:
    """Provider: remove your payout account (withdrawals then need a new one)."""
    await payouts.remove_payout_account(session, user.id, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@payments.get("/payouts", response_model=Page[PayoutOut])
async def list_payouts(
    _admin: AdminDep,
    session: SessionDep,
    status_: Annotated[PayoutStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[PayoutOut]:
    """Admin: payouts on their way (not final), oldest first; or those with `status`."""
    rows = await payouts.open_payouts(session, status=status_, limit=limit)
    return Page(items=[PayoutOut.model_validate(r) for r in rows])


@payments.post(
    "/webhooks/paystack",
    responses=responses(InvalidSignature, MalformedWebhook),
    openapi_extra={"security": []},
)
async def paystack_webhook(
    request: Request, session: SessionDep, deps: PaymentsDep, background: BackgroundTasks
) -> dict[str, bool]:
    """Paystack's webhook (public; `x-paystack-signature` checked on the raw body). Stored and
    acknowledged at once; believed only after Paystack confirms it."""
    stored = await service.receive_webhook(
        session,
        deps.settings,
        await request.body(),
        request.headers.getlist("x-paystack-signature"),
    )
    if stored is not None:
        # After the answer (and the commit): the worker retries whatever this does not finish.
        background.add_task(service.process_webhook, deps, stored)
    return {"received": True}


@payments.get("/{reference}", response_model=PaymentOut, responses=responses(PaymentNotFound))
async def get_payment(reference: Reference, user: CurrentUser, session: SessionDep) -> PaymentOut:
    """A payment of yours, by its reference (an admin: any payment)."""
    payment = await service.get_payment(session, reference, user.id, "admin" in user.roles)
    return payment_out(payment)
