"""Withdrawals racing for one balance: the guarded account's conditional UPDATE lets exactly as
many through as the balance covers, refuses the rest with 409, and the balance is never seen
below zero; one Idempotency-Key sent many times at once makes one withdrawal."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import KeySet
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from krika_common.auth import StaticKeys
from krika_common.testing.http import app_client
from krika_common.testing.jwt import TestKeys
from ledger.app import create_app
from ledger.config import Settings
from ledger.flows import commission_of

from .conftest import APP_ROLE
from .factories import Books

AMOUNT = 10_000  # the tests' smallest withdrawal
COVERED = 50
REQUESTS = 200
PRICE = 555_556  # 10 % commission: 55,555.6 -> 55,556 (half up); the provider nets 500,000


@dataclass
class Watch:
    """What a concurrent observer saw of the provider's available account while requests ran."""

    balances: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)  # the service's connections in a transaction


@pytest_asyncio.fixture
async def as_owner(database_url: str, clean_db: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    dsn = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def slow_path(url: str, delay: float) -> AsyncIterator[str]:
    """`url` through a local TCP forwarder that holds every answer from the server `delay`
    seconds (a distant or busy Redis): requests pile up on their connections."""
    target = URL(url)
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lag: float) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(lag)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
        links.extend((writer, up_writer))
        await asyncio.gather(
            pipe(reader, up_writer, 0), pipe(up_reader, writer, delay), return_exceptions=True
        )

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield str(target.with_host("127.0.0.1").with_port(port))
    finally:
        server.close()
        for writer in links:
            writer.transport.abort()
        await server.wait_closed()


async def watch(conn: asyncpg.Connection, provider_id: uuid.UUID, stop: asyncio.Event) -> Watch:
    seen = Watch()
    while True:
        last = stop.is_set()
        row = await conn.fetchrow(
            "SELECT credits_posted - debits_posted - debits_pending AS available, "
            "debits_pending FROM accounts WHERE kind = 'available' AND owner_id = $1",
            provider_id,
        )
        assert row is not None
        seen.balances.append(row["available"])
        seen.busy.append(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 "
                "AND datname = current_database() AND state <> 'idle'",
                APP_ROLE,
            )
        )
        if last:
            return seen
        await asyncio.sleep(0.001)


async def race(books: Books, as_owner: asyncpg.Connection) -> tuple[list[httpx.Response], Watch]:
    """REQUESTS withdrawals of AMOUNT at once, against COVERED * AMOUNT available; what a
    concurrent observer saw meanwhile."""
    await books.ready_provider()
    assert PRICE - commission_of(PRICE, books.ledger.settings.commission_bps) == COVERED * AMOUNT
    await books.earned(PRICE)
    assert (await books.wallet())["available"] == COVERED * AMOUNT
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(as_owner, books.provider.id, stop))
    try:
        answers = await asyncio.gather(*(books.withdraw(AMOUNT) for _ in range(REQUESTS)))
    finally:
        stop.set()
        seen = await watcher
    # Never below zero nor above what was earned, whatever the answers.
    assert min(seen.balances) >= 0
    assert max(seen.balances) <= COVERED * AMOUNT
    return answers, seen


async def test_200_withdrawals_race_for_50_withdrawals_worth(
    books: Books, as_owner: asyncpg.Connection
) -> None:
    answers, seen = await race(books, as_owner)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: COVERED, 409: REQUESTS - COVERED}, [
        a.text for a in answers if a.status_code not in (201, 409)
    ][:3]
    assert {a.json()["error"] for a in answers if a.status_code == 409} == {"insufficient_funds"}
    created = [a.json() for a in answers if a.status_code == 201]
    assert len({w["id"] for w in created}) == COVERED
    assert {(w["amount"], w["status"]) for w in created} == {(AMOUNT, "pending")}
    # The requests ran at once: the in-process transport does not serialise them.
    assert max(seen.busy) > 1, seen.busy
    assert len(seen.balances) > 2

    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"]) == (0, COVERED * AMOUNT)
    assert wallet["lifetime_earned"] == COVERED * AMOUNT
    assert await as_owner.fetchval("SELECT count(*) FROM withdrawals") == COVERED
    reserved = await as_owner.fetchval(
        "SELECT count(*) FROM journal_entries WHERE kind = 'withdrawal_reserved'"
    )
    assert reserved == COVERED
    requested = await books.events("ledger.withdrawal_requested")
    assert len(requested) == COVERED
    assert {r["withdrawal_id"] for r in requested} == {w["id"] for w in created}
    assert (await books.invariants()).ok

    # Nothing more goes through, now or later.
    late = await books.withdraw(AMOUNT)
    assert (late.status_code, late.json()["error"]) == (409, "insufficient_funds")


async def test_a_race_through_a_slow_redis_is_not_refused(
    books: Books,
    as_owner: asyncpg.Connection,
    settings: Settings,
    redis_url: str,
    test_keys: TestKeys,
) -> None:
    """With Redis answering in 0.3 s, all 200 requests wait on their access check at once:
    more than redis-py's default pool of 100, which failed the rest at once with 503
    access_check_unavailable (fixed by krika_common.access.connect_redis: as many connections
    as the HTTP concurrency, and a burst waits for one)."""
    async with slow_path(redis_url, 0.3) as slow_redis:
        app: FastAPI = create_app(
            settings.model_copy(update={"redis_url": slow_redis}),
            keys=StaticKeys(KeySet([test_keys.key])),
        )
        async with app_client(app) as client:
            books.client = client
            answers, _ = await race(books, as_owner)
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: COVERED, 409: REQUESTS - COVERED}, statuses
    assert await as_owner.fetchval("SELECT count(*) FROM withdrawals") == COVERED
    assert (await books.invariants()).ok


@pytest.mark.parametrize("copies", [2, 10])
async def test_one_idempotency_key_sent_at_once_makes_one_withdrawal(
    books: Books, as_owner: asyncpg.Connection, copies: int
) -> None:
    await books.ready_provider()
    await books.earned(1_000_000)
    key = uuid.uuid4().hex
    answers: list[httpx.Response] = await asyncio.gather(
        *(books.withdraw(300_000, key=key) for _ in range(copies))
    )
    made = [a for a in answers if a.status_code == 201]
    assert made, [a.text for a in answers]
    # The others were told to retry (the first still ran) or got the first answer again.
    for other in answers:
        if other.status_code != 201:
            assert (other.status_code, other.json()["error"]) == (409, "request_in_progress")
    assert len({a.json()["id"] for a in made}) == 1
    [withdrawal_id] = {a.json()["id"] for a in made}

    again = await books.withdraw(300_000, key=key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == withdrawal_id

    assert await as_owner.fetchval("SELECT count(*) FROM withdrawals") == 1
    assert len(await books.events("ledger.withdrawal_requested")) == 1
    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"]) == (600_000, 300_000)
    assert (await books.invariants()).ok
