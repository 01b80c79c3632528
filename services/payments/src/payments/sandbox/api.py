"""Paystack's API as the sandbox answers it (https://api.paystack.co): every route requires
`Authorization: Bearer <secret key>`, takes JSON or form-encoded bodies, and answers
`{status, message, data}` (+ `meta` on lists) or Paystack's error."""

from __future__ import annotations

import hmac
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from . import service
from .errors import INVALID_KEY, MALFORMED_AUTH, NO_AUTH_HEADER, PaystackError, unauthorized
from .objects import now
from .state import background_of, settings_of, store_of


def check_secret_key(request: Request) -> None:
    """Paystack's authentication: the secret key as a Bearer token."""
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        raise unauthorized(NO_AUTH_HEADER)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise unauthorized(MALFORMED_AUTH)
    if not hmac.compare_digest(token.encode(), settings_of(request).secret_key.encode()):
        raise unauthorized(INVALID_KEY)


router = APIRouter(dependencies=[Depends(check_secret_key)], include_in_schema=False)

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def _form_params(form: FormData) -> dict[str, Any]:
    """Form fields, nested PHP-style as Paystack's form examples send them:
    `metadata[order_id]=1`, `channels[]=card`, `channels[0]=card`; a repeated plain field
    (`channels=card&channels=bank`) is a list."""
    params: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            head, _, rest = key.partition("[")
            _insert(params, [head, *_KEY_PART.findall("[" + rest)] if rest else [head], value)
    return {key: _listify(value) for key, value in params.items()}


def _insert(target: dict[str, Any], parts: list[str], value: str) -> None:
    key, rest = parts[0], parts[1:]
    existing = target.get(key)
    if not rest or rest == [""]:
        if existing is None:
            target[key] = [value] if rest else value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            target[key] = [existing, value]
        return
    if not isinstance(existing, dict):
        existing = target[key] = {}
    _insert(existing, rest, value)


def _listify(value: Any) -> Any:
    """`{"0": a, "1": b}` (from `x[0]=a&x[1]=b`) as `[a, b]`, at every level."""
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isascii() and key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


async def read_params(request: Request) -> dict[str, Any]:
    """The request's parameters: its JSON or form body, or its query for a GET."""
    if request.method == "GET":
        return dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _form_params(await request.form())
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise PaystackError("Invalid JSON body", code="invalid_params") from exc
    if not isinstance(body, dict):
        raise PaystackError("Invalid JSON body", code="invalid_params")
    return body


Params = Annotated[dict[str, Any], Depends(read_params)]


def answer(message: str, data: Any, status_code: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": True, "message": message, "data": data, **extra}, status_code)


@router.post("/transaction/initialize")
async def initialize_transaction(request: Request, params: Params) -> JSONResponse:
    """Initialize a transaction: its checkout page is at `authorization_url`."""
    settings = settings_of(request)
    async with store_of(request).tx() as conn:
        data = await service.initialize_transaction(conn, params, settings.public_url, now())
    return answer("Authorization URL created", data)


@router.get("/transaction/verify/{reference}")
async def verify_transaction(reference: str, request: Request) -> JSONResponse:
    """Verify a transaction by its reference."""
    async with store_of(request).tx() as conn:
        data = await service.verify_transaction(conn, reference)
    return answer("Verification successful", data)


@router.get("/transaction/{transaction_id}")
async def fetch_transaction(transaction_id: str, request: Request) -> JSONResponse:
    """Fetch a transaction by its id."""
    async with store_of(request).tx() as conn:
        data = await service.fetch_transaction(conn, transaction_id)
    return answer("Transaction retrieved", data)


@router.get("/bank")
async def list_banks(params: Params) -> JSONResponse:
    """List banks (Nigeria)."""
    data, meta = service.list_banks(params)
    return answer("Banks retrieved", data, meta=meta)


@router.get("/bank/resolve")
async def resolve_account(params: Params) -> JSONResponse:
    """Resolve an account number at a bank to its holder's name."""
    return answer("Account number resolved", service.resolve_account(params))


@router.post("/transferrecipient")
async def create_recipient(request: Request, params: Params) -> JSONResponse:
    """Create a transfer recipient (an existing one for the same account is returned)."""
    async with store_of(request).tx() as conn:
        data = await service.create_recipient(conn, params, now())
    return answer("Transfer recipient created successfully", data, 201)


@router.post("/transfer")
async def initiate_transfer(request: Request, params: Params) -> JSONResponse:
    """Initiate a transfer from the balance."""
    async with store_of(request).tx() as conn:
        message, data = await service.initiate_transfer(
            conn, params, settings_of(request).settle_after, now()
        )
    background_of(request).wake()
    return answer(message, data)


@router.post("/transfer/finalize_transfer")
async def finalize_transfer(request: Request, params: Params) -> JSONResponse:
    """Finalize a transfer that requires an OTP."""
    async with store_of(request).tx() as conn:
        data = await service.finalize_transfer(
            conn, params, settings_of(request).settle_after, now()
        )
    background_of(request).wake()
    return answer("Transfer has been queued", data)


@router.get("/transfer/verify/{reference}")
async def verify_transfer(reference: str, request: Request) -> JSONResponse:
    """Verify a transfer by its reference."""
    async with store_of(request).tx() as conn:
        data = await service.verify_transfer(conn, reference)
    return answer("Transfer retrieved", data)


@router.get("/transfer/{id_or_code}")
async def fetch_transfer(id_or_code: str, request: Request) -> JSONResponse:
    """Fetch a transfer by its id or transfer code."""
    async with store_of(request).tx() as conn:
        data = await service.fetch_transfer(conn, id_or_code)
    return answer("Transfer retrieved", data)


@router.get("/balance")
async def check_balance(request: Request) -> JSONResponse:
    """The integration's balance."""
    async with store_of(request).tx() as conn:
        amount = await service.balance(conn)
    return answer("Balances retrieved", [{"currency": "NGN", "balance": amount}])


@router.post("/refund")
async def create_refund(request: Request, params: Params) -> JSONResponse:
    """Refund a successful transaction, fully or in part."""
    async with store_of(request).tx() as conn:
        data = await service.create_refund(conn, params, settings_of(request).settle_after, now())
    background_of(request).wake()
    return answer("Refund has been queued for processing", data)


@router.get("/refund/{refund_id}")
async def fetch_refund(refund_id: str, request: Request) -> JSONResponse:
    """Fetch a refund by its id."""
    async with store_of(request).tx() as conn:
        data = await service.fetch_refund(conn, refund_id)
    return answer("Refund retrieved", data)
