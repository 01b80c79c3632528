"""Ledger posting benchmark: the ledger's posting path next to the same entries in raw SQL.

    uv run --no-sync python bench/ledger.py                    # 8, 16 and 32 writers, 10 s each
    uv run --no-sync python bench/ledger.py --concurrency 16 --seconds 5 --repeat 3
    uv run --no-sync python bench/ledger.py --reuse            # keep the database of a last run
    uv run --no-sync python bench/ledger.py --profile          # + cProfile of the ledger leg
    uv run --no-sync python bench/ledger.py --concurrency 8 --repeat 3 \
        --legs raw ledger fast-postings fast-combined fast-all fast-all-noping ledger-noping

Creates a scratch database (`krika_bench_ledger`, migrated with ledger's own Alembic
migrations; `--reuse` keeps it), seeds `--providers` providers ready to withdraw (KYC approved,
a payout account; their `available` accounts and the system accounts exist), then runs the life
of many orders with `--concurrency` writers, each order four journal entries, each entry in a
transaction of its own:

    payment_captured     clearing Dr / order escrow Cr (the escrow account is new)
    order_released       escrow Dr / provider available Cr (net) / commission Cr (10 %)
    withdrawal_reserved  pending: provider available Dr / clearing Cr (the order's net)
    withdrawal_posted    the reservation posted (for `--void-share` of them: withdrawal_voided)

Legs (`--legs`; the first four by default):

- `raw`: the ceiling. The same entries as hand-written SQL through asyncpg (a pool of one
  connection per writer, each writer keeps its own): per entry BEGIN, INSERT the entry (ON
  CONFLICT DO NOTHING RETURNING id), the conditional UPDATE of each guarded account in ascending
  id order, one multi-row INSERT of the postings, COMMIT; the payment also creates the order's
  escrow account (INSERT ... ON CONFLICT DO NOTHING RETURNING id). Account ids are known.
- `flow-sql`: every statement the `ledger` leg sends, in the same order and the same
  transactions (the pool's pre-ping, the escrow lock and first-payment look-up, the
  parked-events look-up, savepoints, the withdrawal and outbox rows...), hand-written through
  asyncpg: the ledger's round trips without SQLAlchemy, the ORM and pydantic.
- `ledger`: the ledger's real code on the engine the services use (`krika_common.db.make_engine`,
  pool sized to the writers, pre-ping on): `ledger.flows.book` for the payment, completion and
  payout events (as the worker calls it, one event per transaction, without the inbox row) and
  `ledger.service.request_withdrawal` for the reservation (as the API calls it), with one
  `Ledger(settings, Journal())` whose account-id cache is warm for the seeded accounts.
- `inbox`: the worker's batching: `InboxHandlers.handle_batch` from `ledger.consumers` (inbox
  claim + `flows.book` per event) on `--batch` orders' payments in one transaction, then their
  completions in one, their withdrawals one per transaction (the API), their payouts in one.

Analysis legs, the `ledger` leg with one thing changed (NOT the service's code: what the
figures in bench/README.md measure as possible changes):

- `ledger-noping`: an engine without `pool_pre_ping` (with asyncpg the ping is BEGIN, `;`,
  ROLLBACK: three round trips per transaction);
- `fast-postings`, `fast-combined`, `fast-all`: `FastJournal` below, step by step;
  `fast-all-noping`: `fast-all` without the pre-ping.

Each figure: entries/s over `--seconds` (writers finish the order they are on), latency of each
entry's transaction (p50/p95/p99; for `inbox`, of the batch it was in), CPU per entry of this
process, of the PostgreSQL backends serving it, and of the whole machine (/proc/stat: other
users' work included). Legs alternate within each round so a noisy neighbour hurts them alike;
each is warmed up first. Before measuring, the round trips per entry of each leg are counted
over a few orders. At the end `ledger.service.invariants` runs over everything booked (the
run fails if it is not ok). Prints a table and writes the figures as JSON to bench/results/
(git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import functools
import io
import json
import logging
import os
import platform
import pstats
import random
import resource
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

# Run as `python bench/ledger.py`, this file's folder comes first on sys.path and this file would
# be imported as `ledger`: the service's package must win.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import asyncpg
from sqlalchemy import BigInteger, bindparam, event, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import make_engine, make_sessionmaker, utcnow
from krika_common.events import (
    Delivery,
    Envelope,
    EventData,
    OrderCompleted,
    PaymentSucceeded,
    PayoutFailed,
    PayoutSucceeded,
)
from krika_common.testing.databases import alembic_upgrade, create_database, drop_database
from ledger import flows, service
from ledger.config import Settings
from ledger.consumers import inbox_handlers
from ledger.flows import Ledger, commission_of
from ledger.journal import ENTRIES, OVERDRAFTS, Journal, Ref
from ledger.journal import Leg as JournalLeg
from ledger.journal import Overdraft as JournalOverdraft
from ledger.models import GUARDED, Account, AccountKind, JournalEntry, Phase, Provider
from ledger.schemas import WithdrawalIn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PG_SERVER = os.environ.get("KRIKA_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
DATABASE = "krika_bench_ledger"
ALEMBIC_INI = ROOT / "services" / "ledger" / "alembic.ini"
NGN = "NGN"
COMMISSION_BPS = 1000
PROVIDERS = str(Provider.__tablename__)  # ledger's providers read model
KINDS = ("payment_captured", "order_released", "withdrawal_reserved", "withdrawal_settled")

T = TypeVar("T")


def database_url() -> str:
    return f"{PG_SERVER}/{DATABASE}"


def asyncpg_dsn() -> str:
    return database_url().replace("postgresql+asyncpg://", "postgresql://", 1)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds each of these processes has used so far (gone ones are left out)."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{pid}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


async def backends() -> list[int]:
    """The PostgreSQL backends serving this benchmark's database (its pools' connections)."""
    conn = await asyncpg.connect(asyncpg_dsn())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            DATABASE,
        )
    finally:
        await conn.close()
    return [int(r[0]) for r in rows]


def percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


# --- the database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Books:
    """The seeded accounts: what the raw legs know without asking."""

    clearing: int
    commission: int
    providers: list[tuple[uuid.UUID, int]]  # (user id, id of its `available` account)


async def seed(providers: int) -> None:
    """Providers ready to withdraw, their `available` accounts and the system accounts."""
    conn = await asyncpg.connect(asyncpg_dsn())
    now = utcnow()
    try:
        users = [uuid.uuid4() for _ in range(providers)]
        await conn.copy_records_to_table(
            PROVIDERS,
            records=[(u, now, uuid.uuid4(), now) for u in users],
            columns=[
                "user_id",
                "kyc_approved_at",
                "payout_account_id",
                "payout_account_changed_at",
            ],
        )
        accounts: list[tuple[Any, ...]] = [
            (AccountKind.clearing.value, None, NGN, False, now),
            (AccountKind.commission.value, None, NGN, False, now),
        ]
        accounts += [(AccountKind.available.value, u, NGN, True, now) for u in users]
        await conn.copy_records_to_table(
            "accounts",
            records=accounts,
            columns=["kind", "owner_id", "currency", "guarded", "created_at"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def load_books() -> Books | None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn())
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        rows = await conn.fetch(
            "SELECT id, kind, owner_id FROM accounts WHERE kind = ANY($1::text[]) "
            "AND currency = $2 ORDER BY id",
            [AccountKind.clearing.value, AccountKind.commission.value, AccountKind.available.value],
            NGN,
        )
        ready = {
            r[0]
            for r in await conn.fetch(
                f"SELECT user_id FROM {PROVIDERS} "
                "WHERE kyc_approved_at IS NOT NULL AND payout_account_id IS NOT NULL"
            )
        }
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    system = {r["kind"]: r["id"] for r in rows if r["owner_id"] is None}
    available = [(r["owner_id"], r["id"]) for r in rows if r["kind"] == AccountKind.available]
    if AccountKind.clearing not in system or AccountKind.commission not in system:
        return None
    return Books(
        system[AccountKind.clearing],
        system[AccountKind.commission],
        [(user, account) for user, account in available if user in ready],
    )


async def prepare_database(providers: int, reuse: bool) -> Books:
    if reuse:
        books = await load_books()
        if books is not None and len(books.providers) >= providers:
            print(f"reusing {DATABASE} ({len(books.providers)} providers)")
            return Books(books.clearing, books.commission, books.providers[:providers])
    await drop_database(PG_SERVER, DATABASE)
    await create_database(PG_SERVER, DATABASE)
    await asyncio.to_thread(alembic_upgrade, ALEMBIC_INI, database_url())
    await seed(providers)
    books = await load_books()
    assert books is not None
    print(f"created {DATABASE}: migrated, {len(books.providers)} providers seeded")
    return books


async def table_counts() -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn())
    try:
        counts = {}
        for table in ("journal_entries", "postings", "accounts", "withdrawals", "outbox"):
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        counts["parked_open"] = int(
            await conn.fetchval("SELECT count(*) FROM parked_events WHERE resolved_at IS NULL")
        )
        return counts
    finally:
        await conn.close()


# --- the workload ------------------------------------------------------------------------------


@dataclass
class Order:
    """One order's life: paid, completed, its net withdrawn, the payout settled."""

    customer_id: uuid.UUID
    provider_id: uuid.UUID
    available: int  # the provider's `available` account id
    price: int
    payout_ok: bool
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    reference: str = field(default_factory=lambda: "krk-" + uuid.uuid4().hex[:24])

    @property
    def commission(self) -> int:
        return commission_of(self.price, COMMISSION_BPS)

    @property
    def net(self) -> int:
        return self.price - self.commission

    def paid(self) -> Envelope:
        return Envelope.wrap(
            PaymentSucceeded(
                payment_id=uuid.uuid4(),
                order_id=self.id,
                customer_id=self.customer_id,
                reference=self.reference,
                amount=self.price,
                currency=NGN,
                paid_at=utcnow(),
            ),
            producer="payments",
        )

    def completed(self) -> Envelope:
        return Envelope.wrap(
            OrderCompleted(
                order_id=self.id,
                service_id=uuid.uuid4(),
                package_id=uuid.uuid4(),
                customer_id=self.customer_id,
                provider_id=self.provider_id,
                price=self.price,
                currency=NGN,
                completed_at=utcnow(),
            ),
            producer="orders",
        )

    def settled(self, withdrawal_id: uuid.UUID) -> Envelope:
        data: EventData
        if self.payout_ok:
            data = PayoutSucceeded(
                withdrawal_id=withdrawal_id,
                provider_id=self.provider_id,
                amount=self.net,
                currency=NGN,
                transfer_code="TRF_bench",
                paid_at=utcnow(),
            )
        else:
            data = PayoutFailed(
                withdrawal_id=withdrawal_id,
                provider_id=self.provider_id,
                amount=self.net,
                currency=NGN,
                reason="bench: transfer failed",
                failed_at=utcnow(),
            )
        return Envelope.wrap(data, producer="payments")


class Workload:
    def __init__(self, books: Books, void_share: float) -> None:
        self.books = books
        self.void_share = void_share

    def order(self, rng: random.Random) -> Order:
        provider, available = rng.choice(self.books.providers)
        price = max(10_000, int(rng.lognormvariate(13.8, 0.9)))  # kobo, ~₦10,000 median
        return Order(uuid.uuid4(), provider, available, price, rng.random() >= self.void_share)


_now_booking = [""]  # the entry being booked: round trips are counted against it


class Recorder:
    """Entries booked and the latency of the transaction each was in."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.kinds: Counter[str] = Counter()

    async def timed(self, kind: str, work: Awaitable[T], entries: int = 1) -> T:
        _now_booking[0] = kind
        started = time.perf_counter()
        result = await work
        elapsed = time.perf_counter() - started
        self.latencies.extend([elapsed] * entries)
        self.kinds[kind] += entries
        return result

    @property
    def entries(self) -> int:
        return len(self.latencies)


class Trips:
    """Round trips to PostgreSQL while counting is on, by the entry being booked."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statements: dict[str, list[str]] = defaultdict(list)
        self.on = False

    def add(self, what: str, n: int = 1) -> None:
        if self.on:
            kind = _now_booking[0]
            self.counts[kind] += n
            self.statements[kind].append(" ".join(what.split())[:110])


class Leg(Protocol):
    name: str
    trips: Trips

    async def open(self, writers: int) -> None: ...

    async def close(self) -> None: ...

    def writer(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """What one writer keeps (a connection for the raw legs)."""

    async def one(self, handle: Any, rec: Recorder, rng: random.Random) -> None:
        """Book one order's life (or a batch of them)."""


# --- raw: the same entries, hand-written ------------------------------------------------------

INSERT_ACCOUNT = """INSERT INTO accounts (kind, owner_id, currency, guarded, debits_pending,
    debits_posted, credits_posted, created_at) VALUES ($1, $2, $3, $4, 0, 0, 0, $5)
    ON CONFLICT DO NOTHING RETURNING id"""
INSERT_ENTRY = """INSERT INTO journal_entries (key, kind, phase, pending_id, currency, amount,
    order_id, withdrawal_id, reference, event_id, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING id"""
MOVE_GUARDED = """UPDATE accounts SET debits_pending = debits_pending + $2,
    debits_posted = debits_posted + $3, credits_posted = credits_posted + $4
    WHERE id = $1 AND debits_pending + $2 + debits_posted + $3 <= credits_posted + $4
    RETURNING id"""


def insert_postings(legs: int) -> str:
    rows = ", ".join(f"($1, ${4 + 3 * i}, ${5 + 3 * i}, ${6 + 3 * i}, $2, $3)" for i in range(legs))
    return (
        "INSERT INTO postings (entry_id, account_id, amount, pending, currency, created_at) "
        f"VALUES {rows}"
    )


INSERT_POSTINGS = {n: insert_postings(n) for n in (2, 3, 4)}


@dataclass(frozen=True, slots=True)
class RawLeg:
    """One posting: account id, guarded?, + debit / - credit, pending?"""

    account: int
    guarded: bool
    amount: int
    pending: bool = False


class Overdraft(Exception):
    pass


class Conn:
    """An asyncpg connection whose round trips are counted."""

    def __init__(self, conn: Any, trips: Trips) -> None:
        self.conn = conn
        self.trips = trips

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.trips.add(sql)
        return await self.conn.fetchval(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.trips.add(sql)
        return await self.conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.trips.add(sql)
        return await self.conn.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        self.trips.add(sql)
        return await self.conn.execute(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.trips.add("BEGIN")
        async with self.conn.transaction():
            yield
            self.trips.add("COMMIT")


async def raw_post(
    conn: Conn,
    *,
    key: str,
    kind: str,
    phase: str,
    legs: list[RawLeg],
    now: dt.datetime,
    pending_id: int | None = None,
    order_id: uuid.UUID | None = None,
    withdrawal_id: uuid.UUID | None = None,
    reference: str | None = None,
) -> int | None:
    """What `Journal.post` sends, as plain SQL."""
    amount = sum(leg.amount for leg in legs if leg.amount > 0)
    entry_id = await conn.fetchval(
        INSERT_ENTRY,
        key,
        kind,
        phase,
        pending_id,
        NGN,
        amount,
        order_id,
        withdrawal_id,
        reference,
        uuid.uuid4(),
        now,
    )
    if entry_id is None:
        return None
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for leg in legs:
        if not leg.guarded:
            continue
        totals = deltas[leg.account]
        if leg.pending:
            totals[0] += leg.amount
        elif leg.amount > 0:
            totals[1] += leg.amount
        else:
            totals[2] -= leg.amount
    for account_id in sorted(deltas):
        if await conn.fetchval(MOVE_GUARDED, account_id, *deltas[account_id]) is None:
            raise Overdraft(account_id)
    args: list[Any] = [entry_id, NGN, now]
    for leg in legs:
        args += [leg.account, leg.amount, leg.pending]
    await conn.execute(INSERT_POSTINGS[len(legs)], *args)
    return int(entry_id)


def reserve_legs(order: Order, clearing: int) -> list[RawLeg]:
    return [
        RawLeg(order.available, True, order.net, True),
        RawLeg(clearing, False, -order.net, True),
    ]


def settle_legs(order: Order, clearing: int) -> list[RawLeg]:
    released = [
        RawLeg(leg.account, leg.guarded, -leg.amount, True) for leg in reserve_legs(order, clearing)
    ]
    if not order.payout_ok:
        return released
    return [
        *released,
        RawLeg(order.available, True, order.net),
        RawLeg(clearing, False, -order.net),
    ]


class Raw:
    name = "raw"

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.pool: Any = None
        self.trips = Trips()

    async def open(self, writers: int) -> None:
        self.pool = await asyncpg.create_pool(asyncpg_dsn(), min_size=writers, max_size=writers)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn:
            yield Conn(conn, self.trips)

    async def one(self, handle: Any, rec: Recorder, rng: random.Random) -> None:
        await self.order(handle, rec, self.workload.order(rng))

    async def order(self, conn: Conn, rec: Recorder, order: Order) -> None:
        books = self.workload.books
        clearing = books.clearing

        async def paid() -> int:
            now = utcnow()
            async with conn.transaction():
                escrow = await conn.fetchval(
                    INSERT_ACCOUNT, AccountKind.escrow.value, order.id, NGN, True, now
                )
                await raw_post(
                    conn,
                    key=f"payment_captured:{order.reference}",
                    kind="payment_captured",
                    phase="posted",
                    legs=[RawLeg(clearing, False, order.price), RawLeg(escrow, True, -order.price)],
                    now=now,
                    order_id=order.id,
                    reference=order.reference,
                )
            return int(escrow)

        escrow = await rec.timed("payment_captured", paid())

        async def completed() -> None:
            async with conn.transaction():
                await raw_post(
                    conn,
                    key=f"order_released:{order.id}",
                    kind="order_released",
                    phase="posted",
                    legs=[
                        RawLeg(escrow, True, order.price),
                        RawLeg(order.available, True, -order.net),
                        RawLeg(books.commission, False, -order.commission),
                    ],
                    now=utcnow(),
                    order_id=order.id,
                )

        await rec.timed("order_released", completed())
        withdrawal_id = uuid.uuid4()

        async def reserved() -> int | None:
            async with conn.transaction():
                return await raw_post(
                    conn,
                    key=f"withdrawal_reserved:{withdrawal_id}",
                    kind="withdrawal_reserved",
                    phase="pending",
                    legs=reserve_legs(order, clearing),
                    now=utcnow(),
                    withdrawal_id=withdrawal_id,
                )

        reserve_id = await rec.timed("withdrawal_reserved", reserved())
        kind = "withdrawal_posted" if order.payout_ok else "withdrawal_voided"

        async def settled() -> None:
            async with conn.transaction():
                await raw_post(
                    conn,
                    key=f"{kind}:{withdrawal_id}",
                    kind=kind,
                    phase="post_pending" if order.payout_ok else "void_pending",
                    legs=settle_legs(order, clearing),
                    now=utcnow(),
                    pending_id=reserve_id,
                    withdrawal_id=withdrawal_id,
                )

        await rec.timed("withdrawal_settled", settled())


# --- flow-sql: every statement the ledger path sends, hand-written -------------------------------

LOCK_ACCOUNT = "SELECT id FROM accounts WHERE id = $1 FOR UPDATE"
FIRST_PAYMENT = "SELECT key FROM journal_entries WHERE order_id = $1 AND kind = $2"
PARKED_ON = """SELECT event_id, event_type, subject, envelope, reason, attempts, parked_at,
    next_attempt_at, resolved_at FROM parked_events WHERE resolved_at IS NULL AND subject = $1
    ORDER BY parked_at LIMIT 100 FOR UPDATE SKIP LOCKED"""
FIND_ACCOUNT = "SELECT id FROM accounts WHERE kind = $1 AND owner_id = $2 AND currency = $3"
GET_PROVIDER = f"""SELECT user_id, kyc_approved_at, payout_account_id, payout_account_changed_at
    FROM {PROVIDERS} WHERE user_id = $1"""
INSERT_WITHDRAWAL = """INSERT INTO withdrawals (id, provider_id, amount, currency, status,
    failure_reason, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""
INSERT_OUTBOX = """INSERT INTO outbox (event_id, event_type, envelope, headers, created_at,
    published_at, attempts, last_error) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8)
    RETURNING id"""
LOCK_WITHDRAWAL = """SELECT id, provider_id, amount, currency, status, failure_reason, created_at,
    finished_at FROM withdrawals WHERE id = $1 FOR UPDATE"""
RESERVATION = """SELECT journal_entries.id, postings.account_id, postings.amount, accounts.guarded
    FROM journal_entries JOIN postings ON postings.entry_id = journal_entries.id
    JOIN accounts ON accounts.id = postings.account_id WHERE journal_entries.key = $1"""
FINISH_WITHDRAWAL = "UPDATE withdrawals SET status = $1, finished_at = $2 WHERE id = $3"


class FlowSql(Raw):
    """The `ledger` leg's statements, in its order and transactions, through asyncpg: the
    pool's pre-ping (BEGIN, `;`, ROLLBACK), the escrow lock and first-payment look-up, the
    account look-up of a cache miss, savepoints, the withdrawal and outbox rows, the
    reservation's look-up, the parked-events look-up after each booking. No ORM, no pydantic."""

    name = "flow-sql"

    @contextlib.asynccontextmanager
    async def checkout(self, conn: Conn) -> AsyncIterator[None]:
        self.trips.add("pre-ping: BEGIN; `;`; ROLLBACK", 3)
        ping = conn.conn.transaction()
        await ping.start()
        await conn.conn.fetchrow(";")
        await ping.rollback()
        async with conn.transaction():
            yield

    @contextlib.asynccontextmanager
    async def savepoint(self, conn: Conn) -> AsyncIterator[None]:
        await conn.execute("SAVEPOINT sa_savepoint_1")
        yield
        await conn.execute("RELEASE SAVEPOINT sa_savepoint_1")

    async def order(self, conn: Conn, rec: Recorder, order: Order) -> None:
        books = self.workload.books
        clearing = books.clearing

        async def paid() -> None:
            now = utcnow()
            async with self.checkout(conn):
                escrow = await conn.fetchval(
                    INSERT_ACCOUNT, AccountKind.escrow.value, order.id, NGN, True, now
                )
                await conn.fetchval(LOCK_ACCOUNT, escrow)
                await conn.fetch(FIRST_PAYMENT, order.id, "payment_captured")
                await raw_post(
                    conn,
                    key=f"payment_captured:{order.reference}",
                    kind="payment_captured",
                    phase="posted",
                    legs=[RawLeg(clearing, False, order.price), RawLeg(escrow, True, -order.price)],
                    now=now,
                    order_id=order.id,
                    reference=order.reference,
                )
                await conn.fetch(PARKED_ON, str(order.id))

        await rec.timed("payment_captured", paid())

        async def completed() -> None:
            now = utcnow()
            async with self.checkout(conn):
                await conn.fetchval(
                    INSERT_ACCOUNT, AccountKind.escrow.value, order.id, NGN, True, now
                )
                escrow = await conn.fetchval(FIND_ACCOUNT, AccountKind.escrow.value, order.id, NGN)
                async with self.savepoint(conn):
                    await raw_post(
                        conn,
                        key=f"order_released:{order.id}",
                        kind="order_released",
                        phase="posted",
                        legs=[
                            RawLeg(escrow, True, order.price),
                            RawLeg(order.available, True, -order.net),
                            RawLeg(books.commission, False, -order.commission),
                        ],
                        now=now,
                        order_id=order.id,
                    )
                await conn.fetch(PARKED_ON, str(order.id))

        await rec.timed("order_released", completed())
        withdrawal_id = uuid.uuid4()

        async def reserved() -> None:
            now = utcnow()
            async with self.checkout(conn):
                await conn.fetchrow(GET_PROVIDER, order.provider_id)
                await conn.execute(
                    INSERT_WITHDRAWAL,
                    withdrawal_id,
                    order.provider_id,
                    order.net,
                    NGN,
                    "pending",
                    None,
                    now,
                    None,
                )
                async with self.savepoint(conn):
                    await raw_post(
                        conn,
                        key=f"withdrawal_reserved:{withdrawal_id}",
                        kind="withdrawal_reserved",
                        phase="pending",
                        legs=reserve_legs(order, clearing),
                        now=now,
                        withdrawal_id=withdrawal_id,
                    )
                event_id = uuid.uuid4()
                envelope = {
                    "id": str(event_id),
                    "type": "ledger.withdrawal_requested",
                    "version": 1,
                    "occurred_at": now.isoformat(),
                    "producer": "ledger",
                    "correlation_id": None,
                    "data": {
                        "withdrawal_id": str(withdrawal_id),
                        "provider_id": str(order.provider_id),
                        "amount": order.net,
                        "currency": NGN,
                        "requested_at": now.isoformat(),
                    },
                }
                await conn.fetchval(
                    INSERT_OUTBOX,
                    event_id,
                    "ledger.withdrawal_requested",
                    json.dumps(envelope),
                    "{}",
                    now,
                    None,
                    0,
                    None,
                )

        await rec.timed("withdrawal_reserved", reserved())
        kind = "withdrawal_posted" if order.payout_ok else "withdrawal_voided"

        async def settled() -> None:
            now = utcnow()
            async with self.checkout(conn):
                await conn.fetchrow(LOCK_WITHDRAWAL, withdrawal_id)
                rows = await conn.fetch(RESERVATION, f"withdrawal_reserved:{withdrawal_id}")
                await raw_post(
                    conn,
                    key=f"{kind}:{withdrawal_id}",
                    kind=kind,
                    phase="post_pending" if order.payout_ok else "void_pending",
                    legs=settle_legs(order, clearing),
                    now=now,
                    pending_id=rows[0][0],
                    withdrawal_id=withdrawal_id,
                )
                await conn.execute(
                    FINISH_WITHDRAWAL,
                    "succeeded" if order.payout_ok else "failed",
                    now,
                    withdrawal_id,
                )
                await conn.fetch(PARKED_ON, str(withdrawal_id))

        await rec.timed("withdrawal_settled", settled())


# --- the ledger's own code ---------------------------------------------------------------------


def ledger_settings() -> Settings:
    return Settings(
        database_url=database_url(),
        commission_bps=COMMISSION_BPS,
        currency=NGN,
        min_withdrawal=1,
        log_level="WARNING",
    )


def count_engine_trips(engine: AsyncEngine, trips: Trips) -> None:
    """Count an engine's round trips: its statements (SAVEPOINT and RELEASE included), BEGIN,
    COMMIT / ROLLBACK, and the pool's pre-ping on each checkout (asyncpg: BEGIN, `;`,
    ROLLBACK)."""
    sync = engine.sync_engine
    pre_ping = bool(sync.pool._pre_ping)

    @event.listens_for(sync, "before_cursor_execute")
    def statement(*args: Any) -> None:
        trips.add(str(args[2]))

    @event.listens_for(sync, "begin")
    def begin(*args: Any) -> None:
        trips.add("BEGIN")

    @event.listens_for(sync, "commit")
    def commit(*args: Any) -> None:
        trips.add("COMMIT")

    @event.listens_for(sync, "rollback")
    def rollback(*args: Any) -> None:
        trips.add("ROLLBACK")

    @event.listens_for(sync.pool, "checkout")
    def checkout(*args: Any) -> None:
        if pre_ping:
            trips.add("pre-ping: BEGIN; `;`; ROLLBACK", 3)


class LedgerPath:
    """`ledger.flows.book` for events, `ledger.service.request_withdrawal` for withdrawals; one
    entry per transaction."""

    name = "ledger"

    def __init__(
        self, workload: Workload, ledger: Ledger, name: str = "ledger", pre_ping: bool = True
    ) -> None:
        self.name = name
        self.workload = workload
        self.ledger = ledger
        self.pre_ping = pre_ping
        self.trips = Trips()
        self.engine: AsyncEngine | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None

    async def open(self, writers: int) -> None:
        if self.pre_ping:
            self.engine = make_engine(database_url(), pool_size=writers)
        else:  # make_engine's settings but the pre-ping
            self.engine = create_async_engine(
                database_url(), pool_size=writers, max_overflow=writers, hide_parameters=True
            )
        self.sessionmaker = make_sessionmaker(self.engine)
        count_engine_trips(self.engine, self.trips)
        async with contextlib.AsyncExitStack() as stack:  # open the pool's connections
            for _ in range(writers):
                conn = await stack.enter_async_context(self.engine.connect())
                await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        assert self.engine is not None
        await self.engine.dispose()

    def writer(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext()

    async def book(self, envelope: Envelope) -> None:
        assert self.sessionmaker is not None
        async with self.sessionmaker() as session, session.begin():
            await flows.book(session, self.ledger, envelope)

    async def withdraw(self, order: Order) -> uuid.UUID:
        assert self.sessionmaker is not None
        async with self.sessionmaker() as session, session.begin():
            withdrawal = await service.request_withdrawal(
                session,
                self.ledger,
                order.provider_id,
                WithdrawalIn(amount=order.net, currency=NGN),
            )
        return withdrawal.id

    async def one(self, handle: Any, rec: Recorder, rng: random.Random) -> None:
        order = self.workload.order(rng)
        await rec.timed("payment_captured", self.book(order.paid()))
        await rec.timed("order_released", self.book(order.completed()))
        withdrawal_id = await rec.timed("withdrawal_reserved", self.withdraw(order))
        await rec.timed("withdrawal_settled", self.book(order.settled(withdrawal_id)))


class InboxPath(LedgerPath):
    """The worker's batching: `batch` orders' events through `InboxHandlers.handle_batch`."""

    def __init__(self, workload: Workload, ledger: Ledger, batch: int) -> None:
        super().__init__(workload, ledger, "inbox")
        self.batch = batch
        self.handlers = inbox_handlers(ledger)

    async def handle(self, envelopes: list[Envelope]) -> None:
        assert self.sessionmaker is not None
        outcomes = await self.handlers.handle_batch(
            self.sessionmaker, [Delivery(e, {}) for e in envelopes]
        )
        failed = [o for o in outcomes if o is not None]
        if failed:
            raise failed[0]

    async def one(self, handle: Any, rec: Recorder, rng: random.Random) -> None:
        n = self.batch
        orders = [self.workload.order(rng) for _ in range(n)]
        await rec.timed("payment_captured", self.handle([o.paid() for o in orders]), n)
        await rec.timed("order_released", self.handle([o.completed() for o in orders]), n)
        withdrawals = [await rec.timed("withdrawal_reserved", self.withdraw(o)) for o in orders]
        settled = [o.settled(w) for o, w in zip(orders, withdrawals, strict=True)]
        await rec.timed("withdrawal_settled", self.handle(settled), n)


# --- analysis: what journal.py could do (NOT the service's code) -------------------------------

# One statement for the entry and its postings (the postings' entry id from the entry's
# RETURNING; nothing is inserted when the key was booked already), arrays instead of one
# parameter per posting so the text is the same for every entry: SQLAlchemy compiles it and
# asyncpg prepares it once.
_ENTRY_AND_POSTINGS = text(
    """WITH entry AS (
        INSERT INTO journal_entries (key, kind, phase, pending_id, currency, amount, order_id,
            withdrawal_id, reference, event_id, created_at)
        VALUES (:key, :kind, :phase, :pending_id, :currency, :amount, :order_id,
            :withdrawal_id, :reference, :event_id, :created_at)
        ON CONFLICT DO NOTHING
        RETURNING id
    ), posted AS (
        INSERT INTO postings (entry_id, account_id, amount, pending, currency, created_at)
        SELECT entry.id, leg.account_id, leg.amount, leg.pending, :currency, :created_at
        FROM entry, unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[]),
                           CAST(:pendings AS boolean[])) AS leg(account_id, amount, pending)
    )
    SELECT id FROM entry"""
)
_ACCOUNTS = Account.__table__  # type: ignore[attr-defined]
_C = _ACCOUNTS.c
_POSTINGS = text(
    """INSERT INTO postings (entry_id, account_id, amount, pending, currency, created_at)
    SELECT :entry_id, leg.account_id, leg.amount, leg.pending, :currency, :created_at
    FROM unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[]),
                CAST(:pendings AS boolean[])) AS leg(account_id, amount, pending)"""
)
# The guarded UPDATE built once (Core, on the table): only its values change.
_MOVE = (
    update(_ACCOUNTS)
    .where(
        _C.id == bindparam("account_id"),
        _C.debits_pending
        + bindparam("p", type_=BigInteger)
        + _C.debits_posted
        + bindparam("d", type_=BigInteger)
        <= _C.credits_posted + bindparam("c", type_=BigInteger),
    )
    .values(
        debits_pending=_C.debits_pending + bindparam("p", type_=BigInteger),
        debits_posted=_C.debits_posted + bindparam("d", type_=BigInteger),
        credits_posted=_C.credits_posted + bindparam("c", type_=BigInteger),
    )
    .returning(_C.id)
)
_CREATE_ACCOUNT = (
    pg_insert(_ACCOUNTS)
    .values(
        kind=bindparam("kind"),
        owner_id=bindparam("owner_id"),
        currency=bindparam("currency"),
        guarded=bindparam("guarded"),
        debits_pending=0,
        debits_posted=0,
        credits_posted=0,
        created_at=bindparam("created_at"),
    )
    .on_conflict_do_nothing()
    .returning(_C.id)
)
_FIND_OWNED = select(_C.id).where(
    _C.kind == bindparam("kind"),
    _C.owner_id == bindparam("owner_id"),
    _C.currency == bindparam("currency"),
)
_FIND_SYSTEM = select(_C.id).where(
    _C.kind == bindparam("kind"), _C.owner_id.is_(None), _C.currency == bindparam("currency")
)
_NEW_IDS = "bench.journal.new_ids"


def _cache_new_ids(session: Session) -> None:
    for cache, key, ref in session.info.pop(_NEW_IDS, ()):
        cache[key] = ref


def _forget_new_ids(session: Session, previous: Any) -> None:
    session.info.pop(_NEW_IDS, None)  # any rollback, a savepoint's too: look them up again


class FastJournal(Journal):
    """Analysis only, for the figures of bench/README.md: `Journal` changed step by step.

    - `postings`: the postings in one statement of a fixed text (arrays), which SQLAlchemy
      compiles once; `Journal.post`'s multi-row `insert(Posting).values([...])` has no cache key,
      so it is compiled again for every entry. Everything else as in journal.py.
    - `combined`: the entry and its postings in one statement, and every statement built once
      on the tables (Core) instead of ORM DML built per call.
    - `cache`: an account id cached once the transaction that read or made it commits
      (dropped on any rollback, a savepoint's too), so an order's escrow made at payment is not
      looked up again (INSERT ... ON CONFLICT, then SELECT) at completion.

    Same entries, same locks in the same order, same Overdraft."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.combined = step in ("combined", "cache")
        self.cache_after_commit = step == "cache"
        if not event.contains(Session, "after_commit", _cache_new_ids):
            event.listen(Session, "after_commit", _cache_new_ids)
            event.listen(Session, "after_soft_rollback", _forget_new_ids)

    async def account(
        self, session: AsyncSession, kind: AccountKind, owner_id: uuid.UUID | None, currency: str
    ) -> Ref:
        if not self.cache_after_commit:
            return await super().account(session, kind, owner_id, currency)
        key = (str(kind), owner_id, currency)
        found = self._ids.get(key)
        if found is not None:
            return found
        guarded = kind in GUARDED
        params = {"kind": str(kind), "owner_id": owner_id, "currency": currency}
        account_id = await session.scalar(
            _CREATE_ACCOUNT, {**params, "guarded": guarded, "created_at": utcnow()}
        )
        if account_id is None:
            find = _FIND_SYSTEM if owner_id is None else _FIND_OWNED
            account_id = await session.scalar(find, params)
        if account_id is None:  # pragma: no cover - the insert conflicted, so the row exists
            raise LookupError(key)
        ref = Ref(int(account_id), guarded)
        session.info.setdefault(_NEW_IDS, []).append((self._ids, key, ref))
        return ref

    async def post(
        self,
        session: AsyncSession,
        *,
        key: str,
        kind: str,
        phase: Phase,
        currency: str,
        legs: list[JournalLeg],
        pending_id: int | None = None,
        order_id: uuid.UUID | None = None,
        withdrawal_id: uuid.UUID | None = None,
        reference: str | None = None,
        event_id: uuid.UUID | None = None,
        at: dt.datetime | None = None,
    ) -> int | None:
        if sum(leg.amount for leg in legs if leg.pending) or sum(
            leg.amount for leg in legs if not leg.pending
        ):
            raise ValueError(f"{key}: the legs do not balance")
        if any(leg.amount == 0 for leg in legs):
            raise ValueError(f"{key}: a leg of zero")
        now = at or utcnow()
        entry = {
            "key": key,
            "kind": str(kind),
            "phase": str(phase),
            "pending_id": pending_id,
            "currency": currency,
            "amount": sum(leg.amount for leg in legs if leg.amount > 0),
            "order_id": order_id,
            "withdrawal_id": withdrawal_id,
            "reference": reference,
            "event_id": event_id,
            "created_at": now,
        }
        postings = {
            "currency": currency,
            "created_at": now,
            "accounts": [leg.account.id for leg in legs],
            "amounts": [leg.amount for leg in legs],
            "pendings": [leg.pending for leg in legs],
        }
        if self.combined:
            entry_id = await session.scalar(_ENTRY_AND_POSTINGS, {**entry, **postings})
        else:  # as journal.py
            entry_id = await session.scalar(
                pg_insert(JournalEntry)
                .values(**entry)
                .on_conflict_do_nothing()
                .returning(col(JournalEntry.id))
            )
        if entry_id is None:
            return None
        deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for leg in legs:
            if not leg.account.guarded:
                continue
            totals = deltas[leg.account.id]
            if leg.pending:
                totals[0] += leg.amount
            elif leg.amount > 0:
                totals[1] += leg.amount
            else:
                totals[2] -= leg.amount
        for account_id in sorted(deltas):
            pending, debits, credits = deltas[account_id]
            if self.combined:
                moved = await session.scalar(
                    _MOVE, {"account_id": account_id, "p": pending, "d": debits, "c": credits}
                )
            else:  # as journal.py
                moved = await session.scalar(
                    update(_ACCOUNTS)
                    .where(
                        _C.id == account_id,
                        _C.debits_pending + pending + _C.debits_posted + debits
                        <= _C.credits_posted + credits,
                    )
                    .values(
                        debits_pending=_C.debits_pending + pending,
                        debits_posted=_C.debits_posted + debits,
                        credits_posted=_C.credits_posted + credits,
                    )
                    .returning(_C.id)
                )
            if moved is None:
                OVERDRAFTS.inc()
                raise JournalOverdraft(account_id)
        if not self.combined:
            conn = await session.connection()
            await conn.execute(_POSTINGS, {"entry_id": entry_id, **postings})
        ENTRIES.labels(kind).inc()
        return int(entry_id)


async def warm_journal(ledger: Ledger, books: Books) -> None:
    """Fill the account-id cache as a long-running process has it: the system accounts and
    every provider's `available` account (committed rows, so they are cached)."""
    engine = make_engine(database_url(), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            journal = ledger.journal
            await journal.account(session, AccountKind.clearing, None, NGN)
            await journal.account(session, AccountKind.commission, None, NGN)
            for user, _ in books.providers:
                await journal.account(session, AccountKind.available, user, NGN)
    finally:
        await engine.dispose()


# --- running -------------------------------------------------------------------------------------


async def drive(
    leg: Leg, writers: int, rec: Recorder, seed: int, *, seconds: float = 0, units: int = 0
) -> float:
    """`writers` writers booking orders for `seconds` (each finishes the order it is on), or
    `units` orders (batches) each."""
    started = time.perf_counter()
    stop_at = started + seconds

    async def writer(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        done = 0
        async with leg.writer() as handle:
            while (done < units) if units else (time.perf_counter() < stop_at):
                await leg.one(handle, rec, rng)
                done += 1

    await asyncio.gather(*(writer(i) for i in range(writers)))
    return time.perf_counter() - started


async def measure(
    leg: Leg, writers: int, seconds: float, warmup: float, seed: int
) -> dict[str, Any]:
    await leg.open(writers)
    try:
        if warmup > 0:
            await drive(leg, writers, Recorder(), seed + 7, seconds=warmup)
        before = await table_counts()
        rec = Recorder()
        pids = await backends()
        cpu, busy, pg = cpu_seconds(), machine_busy_seconds(), process_cpu_seconds(pids)
        elapsed = await drive(leg, writers, rec, seed, seconds=seconds)
        cpu, busy = cpu_seconds() - cpu, machine_busy_seconds() - busy
        pg_after = process_cpu_seconds(pids)
        pg_spent = sum(pg_after[pid] - pg[pid] for pid in pg_after.keys() & pg.keys())
        after = await table_counts()
    finally:
        await leg.close()
    booked = after["journal_entries"] - before["journal_entries"]
    if booked != rec.entries:
        raise RuntimeError(f"{leg.name}: {rec.entries} entries counted, {booked} in the database")
    if after["parked_open"] > before["parked_open"]:
        raise RuntimeError(f"{leg.name}: events parked")
    lat = rec.latencies
    return {
        "leg": leg.name,
        "writers": writers,
        "entries": rec.entries,
        "seconds": round(elapsed, 3),
        "entries_per_s": round(rec.entries / elapsed, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p95_ms": round(percentile(lat, 95) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        "process_cpu_ms_per_entry": round(cpu / rec.entries * 1000, 3),
        "postgres_cpu_ms_per_entry": round(pg_spent / rec.entries * 1000, 3),
        "machine_cpu_ms_per_entry": round(busy / rec.entries * 1000, 3),
        "machine_busy": round(busy / elapsed / (os.cpu_count() or 1), 3),
        "by_kind": dict(rec.kinds),
    }


async def count_trips(legs: Sequence[Leg], orders: int) -> dict[str, Any]:
    """Round trips per entry of each leg over `orders` orders (batches) with one writer, and
    the statements of one more."""
    found: dict[str, Any] = {}
    for leg in legs:
        await leg.open(1)
        try:
            await drive(leg, 1, Recorder(), 3, units=2)  # prepared statements, caches
            rec = Recorder()
            leg.trips.on = True
            await drive(leg, 1, rec, 4, units=orders)
            counts = dict(leg.trips.counts)
            leg.trips.statements.clear()
            await drive(leg, 1, Recorder(), 5, units=1)
            leg.trips.on = False
        finally:
            await leg.close()
        found[leg.name] = {
            "per_entry": round(sum(counts.values()) / rec.entries, 2),
            "by_kind": {k: round(counts.get(k, 0) / rec.kinds[k], 2) for k in KINDS},
            "statements": dict(leg.trips.statements),
        }
    return found


# --- profile -------------------------------------------------------------------------------------


PROFILE_GROUPS = (
    ("sqlalchemy/sql/", "SQLAlchemy: building statements, cache keys, compiling"),
    ("sqlalchemy/orm/", "SQLAlchemy ORM: session, flush, ORM-enabled DML and loading"),
    ("sqlalchemy/engine/", "SQLAlchemy engine: execution contexts, results"),
    ("sqlalchemy/dialects/", "SQLAlchemy's asyncpg adapter"),
    ("sqlalchemy/pool/", "SQLAlchemy pool (checkout, pre-ping, reset)"),
    ("sqlalchemy/", "SQLAlchemy: other (greenlet bridge, utilities)"),
    ("sqlmodel/", "SQLModel"),
    ("greenlet", "greenlet switches"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic (events, schemas)"),
    ("/ledger/src/ledger/", "ledger's own code"),
    ("krika_common", "krika_common"),
    ("prometheus_client", "prometheus_client"),
    ("asyncio/", "asyncio event loop"),
    ("uvloop", "asyncio event loop"),
    ("bench/ledger.py", "this benchmark (orders, timing)"),
)


async def profile(leg: Leg, writers: int, seconds: float) -> str:
    """cProfile (CPU time, not wall time) of this process while `leg` runs with `writers`
    writers: the functions' own time summed by package, then the top functions."""
    await leg.open(writers)
    try:
        await drive(leg, writers, Recorder(), 11, seconds=1.0)
        profiler = cProfile.Profile(time.process_time)
        rec = Recorder()
        profiler.enable()
        elapsed = await drive(leg, writers, rec, 12, seconds=seconds)
        profiler.disable()
    finally:
        await leg.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    own: Counter[str] = Counter()
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = "builtins" if filename == "~" else "other"
        for fragment, group in PROFILE_GROUPS:
            if fragment in filename or (filename == "~" and fragment in name):
                where = group
                break
        own[where] += tottime
    total = sum(own.values())
    print(
        f"cProfile of the {leg.name} leg, {writers} writers: {rec.entries} entries in "
        f"{elapsed:.1f}s ({rec.entries / elapsed:.0f}/s under the profiler), "
        f"{total / rec.entries * 1000:.2f} ms of CPU per entry (profiled; the profiler's own "
        "overhead inflates every share alike)",
        file=out,
    )
    for where, spent in own.most_common():
        print(f"  {spent / total:6.1%}  {where}", file=out)
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


async def run_invariants() -> dict[str, Any]:
    engine = make_engine(database_url(), pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await service.invariants(session)
    finally:
        await engine.dispose()
    return result.model_dump()


# --- main ----------------------------------------------------------------------------------------


FAST_STEPS = {"fast-postings": "postings", "fast-combined": "combined", "fast-all": "cache"}


def make_legs(
    names: Sequence[str], workload: Workload, ledgers: dict[str, Ledger], batch: int
) -> list[Leg]:
    ledger = ledgers["ledger"]
    made: dict[str, Callable[[], Leg]] = {
        "raw": lambda: Raw(workload),
        "ledger": lambda: LedgerPath(workload, ledger),
        "inbox": lambda: InboxPath(workload, ledger, batch),
        "flow-sql": lambda: FlowSql(workload),
        "ledger-noping": lambda: LedgerPath(workload, ledger, "ledger-noping", pre_ping=False),
        "fast-all-noping": lambda: LedgerPath(
            workload, ledgers["fast-all"], "fast-all-noping", pre_ping=False
        ),
    }
    for name in FAST_STEPS:
        made[name] = functools.partial(LedgerPath, workload, ledgers[name], name)
    return [made[n]() for n in names]


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput."""
    ordered = sorted(rows, key=lambda r: r["entries_per_s"])
    return ordered[len(ordered) // 2]


async def orchestrate(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    books = await prepare_database(args.providers, args.reuse)
    workload = Workload(books, args.void_share)
    ledgers = {"ledger": Ledger(ledger_settings(), Journal())}
    ledgers |= {n: Ledger(ledger_settings(), FastJournal(step)) for n, step in FAST_STEPS.items()}
    for name, used in ledgers.items():
        if name == "ledger" or any(leg.startswith(name) for leg in args.legs):
            await warm_journal(used, books)

    trips = await count_trips(make_legs(args.legs, workload, ledgers, args.batch), args.trip_orders)
    print(f"\n== round trips per entry ({args.trip_orders} orders, one writer) ==")
    print(f"{'leg':<10} {'mean':>6} " + " ".join(f"{k:>20}" for k in KINDS))
    for name, found in trips.items():
        by_kind = found["by_kind"]
        print(f"{name:<10} {found['per_entry']:>6} " + " ".join(f"{by_kind[k]:>20}" for k in KINDS))
    if args.statements:
        for name, found in trips.items():
            print(f"\n-- {name}: the statements of one order")
            for kind, statements in found["statements"].items():
                print(f"   {kind}:")
                for s in statements:
                    print(f"      {s}")

    rows: list[dict[str, Any]] = []
    print(
        f"\n== {args.seconds:g}s per figure, warm-up {args.warmup:g}s, {args.repeat} round(s), "
        f"{os.cpu_count()} CPUs =="
    )
    print("(CPU in ms per entry: this process, its PostgreSQL backends, the whole machine)")
    head = ("writers", "entries", "entries/s", "p50 ms", "p95 ms", "p99 ms", "cpu", "pg cpu")
    print(f"{'leg':<10} " + " ".join(f"{h:>9}" for h in (*head, "mach cpu")), flush=True)
    for writers in args.concurrency:
        for round_ in range(args.repeat):
            legs = make_legs(args.legs, workload, ledgers, args.batch)
            if round_ % 2:
                legs.reverse()
            for leg in legs:
                row = await measure(leg, writers, args.seconds, args.warmup, seed=round_ + 1)
                row["round"] = round_
                rows.append(row)
                print(
                    f"{row['leg']:<10} {writers:>9} {row['entries']:>9} "
                    f"{row['entries_per_s']:>9.0f} {row['p50_ms']:>9.2f} {row['p95_ms']:>9.2f} "
                    f"{row['p99_ms']:>9.2f} {row['process_cpu_ms_per_entry']:>9.3f} "
                    f"{row['postgres_cpu_ms_per_entry']:>9.3f} "
                    f"{row['machine_cpu_ms_per_entry']:>9.3f}",
                    flush=True,
                )

    summary: list[dict[str, Any]] = []
    print("\n== medians over rounds; ratios within each round ==")
    for writers in args.concurrency:
        at = [r for r in rows if r["writers"] == writers]
        raw = [r for r in at if r["leg"] == "raw"]
        for name in args.legs:
            mine = [r for r in at if r["leg"] == name]
            line = dict(median_row(mine))
            if raw and name != "raw":
                shares = [
                    m["entries_per_s"] / r["entries_per_s"]
                    for m, r in zip(
                        sorted(mine, key=lambda x: x["round"]),
                        sorted(raw, key=lambda x: x["round"]),
                        strict=True,
                    )
                ]
                line["share_of_raw"] = round(statistics.median(shares), 3)
                line["share_of_raw_rounds"] = [round(s, 3) for s in shares]
            summary.append(line)
            share = line.get("share_of_raw")
            print(
                f"{name:<10} {writers:>3} writers: {line['entries_per_s']:>7.0f} entries/s, "
                f"p50 {line['p50_ms']:.2f} / p95 {line['p95_ms']:.2f} / p99 {line['p99_ms']:.2f} ms"
                + (f", {share:.0%} of raw" if share is not None else "")
            )

    if args.profile:
        report = await profile(
            LedgerPath(workload, ledgers["ledger"]), max(args.concurrency), args.seconds
        )
        print("\n" + report[report.index("cProfile of") :][:6000])
    else:
        report = ""

    invariants = await run_invariants()
    counts = await table_counts()
    print(f"\n== ledger.service.invariants over {counts['journal_entries']} entries ==")
    for check in invariants["checks"]:
        print(f"  {check['name']:<32} {'ok' if check['ok'] else 'BROKEN ' + check['detail']}")
    print(
        f"  => {'ok' if invariants['ok'] else 'BROKEN'}; "
        f"open parked events: {counts['parked_open']}"
    )

    best = [s for s in summary if s["leg"] == "ledger"]
    if best:
        top = max(best, key=lambda s: s["entries_per_s"])
        share = top.get("share_of_raw")
        print(
            f"\nledger path: best {top['entries_per_s']:.0f} entries/s at {top['writers']} writers "
            "(target >= 2,000)"
            + (f", {share:.0%} of raw there (target >= 50 %)" if share is not None else "")
        )

    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"ledger-{stamp}.json"
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_end": os.getloadavg(),
    }
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "machine": machine,
                "trips": trips,
                "rows": rows,
                "summary": summary,
                "invariants": invariants,
                "counts": counts,
                "profile": report,
            },
            indent=2,
            default=str,
        )
    )
    print(f"figures: {out.relative_to(ROOT)}")
    if not invariants["ok"]:
        raise SystemExit("ledger invariants broken")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per figure")
    parser.add_argument("--warmup", type=float, default=2.0, help="per figure, not measured")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, legs alternating")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument(
        "--legs",
        nargs="+",
        default=["raw", "flow-sql", "ledger", "inbox"],
        help="raw flow-sql ledger inbox; analysis: ledger-noping fast-postings fast-combined "
        "fast-all fast-all-noping",
    )
    parser.add_argument("--batch", type=int, default=10, help="orders per batch (inbox leg)")
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--void-share", type=float, default=0.1, help="payouts that fail")
    parser.add_argument("--trip-orders", type=int, default=20, help="orders for the trip count")
    parser.add_argument("--statements", action="store_true", help="print one order's statements")
    parser.add_argument("--reuse", action="store_true", help="keep the database of a last run")
    parser.add_argument("--profile", action="store_true", help="cProfile the ledger leg")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
