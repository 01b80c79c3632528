"""The checkout page at `authorization_url`: the amount, the customer's e-mail and the
reference, and one form whose Pay and Decline buttons post `outcome=success` or
`outcome=failed` to the same URL.

Paying completes the transaction (charge.success is queued) and redirects to the
transaction's callback_url with `trxref` and `reference`, as Paystack's checkout does;
declining fails it (no webhook). A transaction is completed once: another post changes
nothing. Everything shown is HTML-escaped.
"""

from __future__ import annotations

import html
from decimal import Decimal
from importlib.resources import files
from string import Template
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import service
from .objects import now
from .state import background_of, store_of

router = APIRouter(prefix="/checkout", include_in_schema=False)

_PAGE = Template((files(__package__) / "templates" / "page.html").read_text(encoding="utf-8"))
_SYMBOLS = {"NGN": "₦", "GHS": "GH₵", "ZAR": "R", "KES": "KSh", "USD": "$"}
# The page runs no script and loads nothing from elsewhere.
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def format_amount(amount: int, currency: str) -> str:
    """Minor units for people: 500000 NGN -> ₦5,000.00."""
    major = Decimal(amount) / 100
    symbol = _SYMBOLS.get(currency, f"{currency} ")
    return f"{symbol}{major:,.2f}"


def _page(title: str, content: str, status_code: int = 200) -> HTMLResponse:
    body = _PAGE.substitute(title=html.escape(title), content=content)
    return HTMLResponse(body, status_code=status_code, headers=_HEADERS)


def _details(txn: Any) -> str:
    e = html.escape
    return (
        f'<p class="amount">{e(format_amount(txn.amount, txn.currency))}</p>'
        f"<dl><dt>Email</dt><dd>{e(txn.email)}</dd>"
        f"<dt>Reference</dt><dd>{e(txn.reference)}</dd></dl>"
    )


def _not_found() -> HTMLResponse:
    return _page(
        "Not found",
        "<h1>Payment not found</h1><p>This payment link is not valid.</p>",
        404,
    )


def _already_processed(txn: Any) -> HTMLResponse:
    state = "successful" if txn.status in ("success", "reversed") else txn.status
    return _page(
        "Already processed",
        f"<h1>This payment has already been processed</h1>{_details(txn)}"
        f'<p class="note">Status: {html.escape(state)}</p>',
        409,
    )


def with_reference(callback_url: str, reference: str) -> str:
    """The callback URL with `trxref` and `reference` added to its query."""
    parts = urlsplit(callback_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True)]
    query += [("trxref", reference), ("reference", reference)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@router.get("/{access_code}")
async def show_checkout(access_code: str, request: Request) -> Response:
    """The payment page."""
    async with store_of(request).tx() as conn:
        found = await service.checkout_transaction(conn, access_code)
    if found is None:
        return _not_found()
    txn, _ = found
    if txn.status != "abandoned":
        return _already_processed(txn)
    action = html.escape(f"/checkout/{access_code}")
    pay_label = html.escape(f"Pay {format_amount(txn.amount, txn.currency)}")
    return _page(
        "Checkout",
        f"<h1>Pay Krika</h1>{_details(txn)}"
        f'<form method="post" action="{action}">'
        f'<button class="pay" type="submit" name="outcome" value="success">{pay_label}</button>'
        '<button class="decline" type="submit" name="outcome" value="failed">Decline</button>'
        "</form>"
        '<p class="note">Sandbox checkout: no card is charged.</p>',
    )


@router.post("/{access_code}")
async def submit_checkout(access_code: str, request: Request) -> Response:
    """Pay (outcome=success) or decline (outcome=failed)."""
    form = await request.form()
    outcome = form.get("outcome")
    async with store_of(request).tx() as conn:
        found = await service.checkout_transaction(conn, access_code)
        if found is None:
            return _not_found()
        txn, _ = found
        if outcome not in ("success", "failed"):
            return _page(
                "Bad request",
                "<h1>Choose Pay or Decline</h1><p>The form was not understood.</p>",
                400,
            )
        done = await service.complete_checkout(conn, txn, outcome, now())
        completed = await service.checkout_transaction(conn, access_code)
    assert completed is not None
    txn, _ = completed
    if not done:
        return _already_processed(txn)
    background_of(request).wake()
    if outcome == "failed":
        return _page("Payment declined", f"<h1>Payment declined</h1>{_details(txn)}")
    if txn.callback_url:
        return RedirectResponse(with_reference(txn.callback_url, txn.reference), status_code=303)
    return _page("Payment successful", f"<h1>Payment successful</h1>{_details(txn)}")
