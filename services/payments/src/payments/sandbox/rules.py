"""Test rules (POST /_sandbox/rules): how the next matching call, transfer, refund, charge
or webhook behaves. A rule is consumed by its first match, oldest rule first; `times: N`
makes it apply to N matches. Kinds (the `kind` field):

- `fault` {method ("*" = any), path (exact, or a prefix ending in "*"), fault: server_error |
  timeout, effect}: the next matching API call (the checkout page included; a call refused
  for its key does not count) answers 500 `{"status": false, "message": "An error occurred"}`
  or is held `timeout_seconds` (then 504, or with `effect` the real answer; nothing if the
  client left). `effect: true`: the operation is carried out and committed first.
- `transfer` {reference?, answer: pending | otp | success, outcome: success | failed |
  reversed | none}: how POST /transfer answers and how the transfer ends after
  `settle_after` (with transfer.success / transfer.failed / transfer.reversed; `none` stays
  pending, no webhook). `otp` waits for /transfer/finalize_transfer with the sandbox OTP.
- `refund` {transaction? (its reference), outcome: processed | failed}.
- `webhook` {event?, reference?, delivery: twice | never | late | out_of_order, delay}:
  twice = two identical deliveries; never = recorded as `dropped`, not sent; late = `held`
  `delay` seconds; out_of_order = `held` until the next webhook for the same reference
  (refund.pending -> refund.processed) or of the same event (one transfer.success -> the
  next) is queued, then sent `delay` seconds after it.
- `charge` {reference?, amount}: the next successful payment captures `amount` instead of
  the amount initialized.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from .store import dumps, rules


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    times: int = Field(default=1, ge=1)


class FaultRule(_Rule):
    kind: Literal["fault"]
    method: str = "*"
    path: str
    fault: Literal["server_error", "timeout"]
    effect: bool = False

    @field_validator("method")
    @classmethod
    def _upper(cls, method: str) -> str:
        return method.upper()

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path.rstrip("/") == self.path.rstrip("/")


class TransferRule(_Rule):
    kind: Literal["transfer"]
    reference: str | None = None
    answer: Literal["pending", "otp", "success"] = "pending"
    outcome: Literal["success", "failed", "reversed", "none"] = "success"


class RefundRule(_Rule):
    kind: Literal["refund"]
    transaction: str | None = None
    outcome: Literal["processed", "failed"] = "processed"


class WebhookRule(_Rule):
    kind: Literal["webhook"]
    event: str | None = None
    reference: str | None = None
    delivery: Literal["twice", "never", "late", "out_of_order"]
    delay: float = Field(default=1.0, ge=0)


class ChargeRule(_Rule):
    kind: Literal["charge"]
    reference: str | None = None
    amount: int = Field(gt=0)


Rule = Annotated[
    FaultRule | TransferRule | RefundRule | WebhookRule | ChargeRule,
    Field(discriminator="kind"),
]
RULE: TypeAdapter[Rule] = TypeAdapter(Rule)
R = TypeVar("R", bound=BaseModel)


async def add_rule(conn: AsyncConnection, rule: Rule, at: float) -> int:
    result = await conn.execute(
        rules.insert().values(
            kind=rule.kind,
            spec=dumps(rule.model_dump(mode="json")),
            remaining=rule.times,
            created_at=at,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def list_rules(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(sa.select(rules).order_by(rules.c.id))).all()
    return [{"id": r.id, "remaining": r.remaining, **json.loads(r.spec)} for r in rows]


async def clear_rules(conn: AsyncConnection) -> None:
    await conn.execute(rules.delete())


async def take_rule(
    conn: AsyncConnection, model: type[R], kind: str, matches: Callable[[R], bool]
) -> R | None:
    """The oldest rule of `kind` that `matches`, consumed once (deleted at its last use)."""
    rows = (
        await conn.execute(sa.select(rules).where(rules.c.kind == kind).order_by(rules.c.id))
    ).all()
    for row in rows:
        rule = model.model_validate_json(row.spec)
        if not matches(rule):
            continue
        if row.remaining <= 1:
            await conn.execute(rules.delete().where(rules.c.id == row.id))
        else:
            await conn.execute(
                rules.update().where(rules.c.id == row.id).values(remaining=row.remaining - 1)
            )
        return rule
    return None
