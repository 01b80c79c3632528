"""The sandbox's own database: its tables (a MetaData of its own, created at startup, never
the payments service's migrations) and one transaction at a time.

Every change runs in `Store.tx()`: a lock makes the sandbox's transactions one at a time
within its process, so a balance check and its debit, or a rule and its consumption, never
interleave, on SQLite as on PostgreSQL. Times are stored as epoch seconds (floats): the
scheduler compares them the same way on both databases.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

metadata = sa.MetaData()

# INTEGER PRIMARY KEY is what autoincrements on SQLite; BIGINT elsewhere.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, primary_key=True, autoincrement=True)


integration = sa.Table(
    "sandbox_integration",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("balance", sa.BigInteger, nullable=False),
    # Set by PUT /_sandbox/config; overrides the setting once set (even to null).
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("webhook_url_set", sa.Boolean, nullable=False, default=False),
)

customers = sa.Table(
    "sandbox_customers",
    metadata,
    _id(),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("customer_code", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

transactions = sa.Table(
    "sandbox_transactions",
    metadata,
    _id(),
    sa.Column("reference", sa.Text, nullable=False, unique=True),
    sa.Column("access_code", sa.Text, nullable=False, unique=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("requested_amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("callback_url", sa.Text, nullable=True),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON
    sa.Column("channels", sa.Text, nullable=False),  # JSON list
    sa.Column("gateway_response", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("fees", sa.BigInteger, nullable=True),
    sa.Column("authorization", sa.Text, nullable=True),  # JSON
    sa.Column("refunded", sa.BigInteger, nullable=False, default=0),
    sa.Column("paid_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

recipients = sa.Table(
    "sandbox_recipients",
    metadata,
    _id(),
    sa.Column("recipient_code", sa.Text, nullable=False, unique=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("account_number", sa.Text, nullable=False),
    sa.Column("account_name", sa.Text, nullable=True),
    sa.Column("bank_code", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("metadata", sa.Text, nullable=True),  # JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("type", "account_number", "bank_code", "currency"),
)

transfers = sa.Table(
    "sandbox_transfers",
    metadata,
    _id(),
    sa.Column("transfer_code", sa.Text, nullable=False, unique=True),
    sa.Column("reference", sa.Text, nullable=False, unique=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("recipient_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    # What it becomes when it settles: success, failed, reversed or none (stays pending).
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("settle_at", sa.Float, nullable=True),
    sa.Column("transferred_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

refunds = sa.Table(
    "sandbox_refunds",
    metadata,
    _id(),
    sa.Column("transaction_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),  # processed or failed
    sa.Column("customer_note", sa.Text, nullable=False),
    sa.Column("merchant_note", sa.Text, nullable=False),
    sa.Column("refund_reference", sa.Text, nullable=True),
    sa.Column("settle_at", sa.Float, nullable=True),
    sa.Column("refunded_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

rules = sa.Table(
    "sandbox_rules",
    metadata,
    _id(),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # JSON, as given
    sa.Column("remaining", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

deliveries = sa.Table(
    "sandbox_webhook_deliveries",
    metadata,
    _id(),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("reference", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON sent
    # pending, delivered, failed, held (waiting to be released) or dropped (never sent)
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # When it is next due; null while held for a later webhook (out_of_order).
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    # out_of_order: the webhook that follows releases this one `hold_delay` seconds later.
    sa.Column("awaiting_successor", sa.Boolean, nullable=False, default=False),
    sa.Column("hold_delay", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class Store:
    """The engine and the one-at-a-time transaction."""

    def __init__(self, database_url: str) -> None:
        url = sa.make_url(database_url)
        options: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database in ("", ":memory:"):
                # One in-memory database: every use must share its single connection.
                options["poolclass"] = StaticPool
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self._lock = asyncio.Lock()

    async def open(self, initial_balance: int) -> None:
        async with self.tx() as conn:
            await conn.run_sync(metadata.create_all)
            found = await conn.scalar(sa.select(integration.c.id))
            if found is None:
                await conn.execute(
                    integration.insert().values(
                        id=1, balance=initial_balance, webhook_url=None, webhook_url_set=False
                    )
                )

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A transaction, committed when the block ends (rolled back if it raises)."""
        async with self._lock, self.engine.begin() as conn:
            yield conn
