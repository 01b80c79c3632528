"""Test controls under /_sandbox (the secret key required; never exposed through the
gateway): where webhooks go, rules (rules.py), the webhook deliveries and the balance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from . import rules, service, webhooks
from .api import check_secret_key
from .objects import now
from .state import background_of, settings_of, store_of

router = APIRouter(
    prefix="/_sandbox", dependencies=[Depends(check_secret_key)], include_in_schema=False
)


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None


class Balance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=0)


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    """Where webhooks go now."""
    async with store_of(request).tx() as conn:
        url = await service.webhook_url(conn, settings_of(request).webhook_url)
    return {"webhook_url": url}


@router.put("/config")
async def put_config(config: WebhookConfig, request: Request) -> dict[str, Any]:
    """Send webhooks to `webhook_url` (kept across restarts; overrides the setting)."""
    async with store_of(request).tx() as conn:
        await service.set_webhook_url(conn, config.webhook_url)
    background_of(request).wake()
    return {"webhook_url": config.webhook_url}


@router.post("/rules", status_code=201)
async def add_rule(rule: Annotated[rules.Rule, Body()], request: Request) -> dict[str, Any]:
    """Add a rule, consumed by its first match(es), oldest first."""
    async with store_of(request).tx() as conn:
        rule_id = await rules.add_rule(conn, rule, now())
    return {"id": rule_id}


@router.get("/rules")
async def list_rules(request: Request) -> dict[str, Any]:
    """The rules not yet consumed."""
    async with store_of(request).tx() as conn:
        return {"data": await rules.list_rules(conn)}


@router.delete("/rules", status_code=204)
async def clear_rules(request: Request) -> Response:
    """Forget every rule."""
    async with store_of(request).tx() as conn:
        await rules.clear_rules(conn)
    return Response(status_code=204)


@router.get("/webhooks")
async def list_deliveries(
    request: Request, reference: Annotated[str | None, Query()] = None, event: str | None = None
) -> dict[str, Any]:
    """Webhook deliveries, oldest first, with the exact body sent."""
    async with store_of(request).tx() as conn:
        return {"data": await webhooks.list_deliveries(conn, reference, event)}


@router.post("/webhooks/{delivery_id}/redeliver", status_code=202)
async def redeliver(delivery_id: int, request: Request) -> JSONResponse:
    """Send that delivery's exact bytes again, as a new delivery."""
    async with store_of(request).tx() as conn:
        new_id = await webhooks.redeliver(conn, delivery_id, now())
    if new_id is None:
        return JSONResponse({"detail": "No such delivery"}, 404)
    background_of(request).wake()
    return JSONResponse({"id": new_id}, 202)


@router.get("/balance")
async def get_balance(request: Request) -> dict[str, Any]:
    """The transfer balance, in kobo."""
    async with store_of(request).tx() as conn:
        return {"amount": await service.balance(conn), "currency": "NGN"}


@router.put("/balance")
async def put_balance(balance: Balance, request: Request) -> dict[str, Any]:
    """Set the transfer balance, in kobo."""
    async with store_of(request).tx() as conn:
        await service.set_balance(conn, balance.amount)
    return {"amount": balance.amount, "currency": "NGN"}
