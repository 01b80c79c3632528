"""Journal entries and postings are append-only: the service's own login role (a member of
krika_ledger_writer) may SELECT and INSERT them, nothing else; and even the owner, a superuser,
is refused an UPDATE or a DELETE by the trigger. A correction is a reversing entry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import APP_ROLE
from .factories import Books

TABLES = ("postings", "journal_entries")
CHANGES = {
    "UPDATE postings": "UPDATE postings SET amount = amount",
    "DELETE postings": "DELETE FROM postings",
    "UPDATE journal_entries": "UPDATE journal_entries SET reference = 'rewritten'",
    "DELETE journal_entries": "DELETE FROM journal_entries",
}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest_asyncio.fixture
async def as_service(
    app_database_url: str, clean_db: AsyncEngine
) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the service's login role."""
    conn = await asyncpg.connect(_dsn(app_database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def as_owner(database_url: str, clean_db: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the tables' owner (the migrating superuser)."""
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def _journal(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    entries = await conn.fetch("SELECT * FROM journal_entries ORDER BY id")
    postings = await conn.fetch("SELECT * FROM postings ORDER BY id")
    return [tuple(r) for r in entries] + [tuple(r) for r in postings]


@pytest_asyncio.fixture
async def booked(books: Books, as_owner: asyncpg.Connection) -> list[tuple[object, ...]]:
    """A paid, completed order and a withdrawal: entries (posted and pending) and postings,
    all written by the service's role (the flows and the API)."""
    await books.ready_provider()
    await books.earned(1_000_000)
    answer = await books.withdraw(500_000)
    assert answer.status_code == 201, answer.text
    journal = await _journal(as_owner)
    assert len(journal) >= 9  # 3 entries, 7 postings
    return journal


async def test_the_service_role_is_a_plain_writer(as_service: asyncpg.Connection) -> None:
    me = await as_service.fetchrow(
        "SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles "
        "WHERE rolname = current_user"
    )
    assert me is not None
    assert (me["name"], me["rolsuper"], me["rolbypassrls"]) == (APP_ROLE, False, False)
    assert await as_service.fetchval(
        "SELECT pg_has_role(current_user, 'krika_ledger_writer', 'MEMBER')"
    )
    for table in TABLES:
        owner = await as_service.fetchval(
            "SELECT tableowner FROM pg_tables WHERE tablename = $1", table
        )
        assert owner != APP_ROLE
        for privilege, granted in (
            ("SELECT", True),
            ("INSERT", True),
            ("UPDATE", False),
            ("DELETE", False),
            ("TRUNCATE", False),
            ("TRIGGER", False),
        ):
            held = await as_service.fetchval(
                "SELECT has_table_privilege(current_user, $1, $2)", table, privilege
            )
            assert held is granted, (table, privilege)


async def test_the_service_role_books_entries(
    booked: list[tuple[object, ...]], as_service: asyncpg.Connection
) -> None:
    # The flows above ran as the service's role; it reads what it wrote.
    assert await _journal(as_service) == booked
    assert await as_service.fetchval("SELECT sum(amount) FROM postings") == 0


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_the_service_role_may_not_change_the_journal(
    change: str,
    booked: list[tuple[object, ...]],
    as_service: asyncpg.Connection,
    as_owner: asyncpg.Connection,
) -> None:
    table = change.split()[1]
    with pytest.raises(
        asyncpg.InsufficientPrivilegeError, match=f"permission denied for table {table}"
    ):
        await as_service.execute(CHANGES[change])
    assert await _journal(as_owner) == booked


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_even_the_owner_is_refused_by_the_trigger(
    change: str, booked: list[tuple[object, ...]], as_owner: asyncpg.Connection
) -> None:
    verb, table = change.split()
    assert await as_owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await as_owner.execute(CHANGES[change])
    assert f"ledger: {table} is append-only ({verb} refused)" in str(refused.value)
    assert await _journal(as_owner) == booked


async def test_one_row_is_refused_too(
    booked: list[tuple[object, ...]], as_owner: asyncpg.Connection
) -> None:
    first = await as_owner.fetchval("SELECT min(id) FROM postings")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await as_owner.execute("UPDATE postings SET amount = -amount WHERE id = $1", first)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await as_owner.execute(
            "DELETE FROM journal_entries WHERE id = (SELECT max(id) FROM journal_entries)"
        )
    assert await _journal(as_owner) == booked


@pytest.mark.parametrize("table", TABLES)
async def test_the_service_role_may_not_truncate_or_disarm(
    table: str,
    booked: list[tuple[object, ...]],
    as_service: asyncpg.Connection,
    as_owner: asyncpg.Connection,
) -> None:
    with pytest.raises(
        asyncpg.InsufficientPrivilegeError, match=f"permission denied for table {table}"
    ):
        await as_service.execute(f"TRUNCATE {table} CASCADE")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await as_service.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await as_service.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    assert await _journal(as_owner) == booked
