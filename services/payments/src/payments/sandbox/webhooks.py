"""Webhooks: events queued as rows (`deliveries`) in the same transaction as the change they
report, signed as Paystack signs them, and sent by a background task that retries.

A delivery's body is `{"event", "data"}` serialised once; `x-paystack-signature` is the hex
HMAC-SHA512 of exactly those bytes keyed with the secret key. A non-2xx answer, a connection
error or a timeout is retried after `webhook_retry_base * 2**(attempt-1)` seconds (at most
`webhook_retry_max_delay`) until `webhook_max_attempts`, then the delivery is `failed`.
Deliveries not yet delivered survive a restart and resume.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .rules import WebhookRule, take_rule
from .store import deliveries, dumps

USER_AGENT = "Paystack-Sandbox/1.0"


def signature(body: bytes, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), body, hashlib.sha512).hexdigest()


def headers_for(body: bytes, secret_key: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-paystack-signature": signature(body, secret_key),
        "user-agent": USER_AGENT,
    }


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """How long to wait after the `attempts`-th failed attempt."""
    return float(min(base * 2 ** (attempts - 1), cap))


async def queue_event(
    conn: AsyncConnection, event: str, reference: str | None, data: dict[str, Any], at: float
) -> None:
    """Record the event's delivery (or deliveries), as the first matching webhook rule says."""
    body = dumps({"event": event, "data": data})
    rule = await take_rule(
        conn,
        WebhookRule,
        "webhook",
        lambda r: r.event in (None, event) and r.reference in (None, reference),
    )
    # A webhook held out of order goes `hold_delay` seconds after the one that follows it:
    # the next one for the same reference (refund.pending -> refund.processed) or, for
    # single-event sequences such as transfers, the next event of the same kind.
    held = (
        await conn.execute(
            sa.select(deliveries.c.id, deliveries.c.hold_delay).where(
                deliveries.c.awaiting_successor.is_(True),
                sa.or_(deliveries.c.reference == reference, deliveries.c.event == event),
            )
        )
    ).all()
    for row in held:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id == row.id)
            .values(awaiting_successor=False, next_attempt_at=at + row.hold_delay)
        )

    row_values: dict[str, Any] = {
        "event": event,
        "reference": reference,
        "body": body,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "awaiting_successor": False,
        "hold_delay": 0.0,
        "created_at": at,
    }
    copies = 1
    if rule is not None:
        if rule.delivery == "twice":
            copies = 2
        elif rule.delivery == "never":
            row_values |= {"status": "dropped", "next_attempt_at": None}
        elif rule.delivery == "late":
            row_values |= {"status": "held", "next_attempt_at": at + rule.delay}
        else:  # out_of_order
            row_values |= {
                "status": "held",
                "next_attempt_at": None,
                "awaiting_successor": True,
                "hold_delay": rule.delay,
            }
    for _ in range(copies):
        await conn.execute(deliveries.insert().values(**row_values))


async def list_deliveries(
    conn: AsyncConnection, reference: str | None, event: str | None
) -> list[dict[str, Any]]:
    query = sa.select(deliveries).order_by(deliveries.c.id)
    if reference is not None:
        query = query.where(deliveries.c.reference == reference)
    if event is not None:
        query = query.where(deliveries.c.event == event)
    return [
        {
            "id": row.id,
            "event": row.event,
            "reference": row.reference,
            "status": row.status,
            "attempts": row.attempts,
            "last_status_code": row.last_status_code,
            "last_error": row.last_error,
            "body": row.body,
        }
        for row in (await conn.execute(query)).all()
    ]


async def redeliver(conn: AsyncConnection, delivery_id: int, at: float) -> int | None:
    """A new delivery of that delivery's exact bytes (a duplicate, as a merchant sees it)."""
    row = (await conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id))).first()
    if row is None:
        return None
    result = await conn.execute(
        deliveries.insert().values(
            event=row.event,
            reference=row.reference,
            body=row.body,
            status="pending",
            attempts=0,
            next_attempt_at=at,
            awaiting_successor=False,
            hold_delay=0.0,
            created_at=at,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]
