"""Test rules: how the next matching call, transfer, refund, charge or webhook behaves.

A rule is consumed by its first match, oldest first (`times` matches in all). Kinds:
- fault: the next API call with that method and path (exact, or a prefix ending in `*`)
  answers 500 (`server_error`) or hangs `timeout_seconds` (`timeout`); with `effect` the
  operation is carried out and committed first and only the answer is lost.
- transfer: how POST /transfer answers (pending, otp, success) and how it ends.
- refund: whether the refund is processed or fails.
- webhook: a webhook sent twice, never, late or out of order.
- charge: the amount a successful payment captures instead of the one initialized.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
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
