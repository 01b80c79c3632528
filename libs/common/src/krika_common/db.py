"""Async SQLModel engine and the request-scoped session that commits or rolls back at the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.errors import ServiceError

# Stable constraint names so Alembic autogenerate and migrations agree across services.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_field(**kw: Any) -> Any:
    """A timezone-aware timestamp column defaulting to now."""
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kw)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # hide_parameters: a failed statement's message (logged with its traceback) must not carry
    # the values - password hashes, e-mail addresses, tokens.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


_HOLDS = "krika.holds"


def hold_answer(info: dict[Any, Any], task: asyncio.Task[None]) -> None:
    """Make the request whose session has this `info` (`session.info`, also reachable from a
    sync `after_commit` listener) wait for `task` before answering: work that must follow the
    commit, such as invalidating caches the change made stale, so a client that reads again
    sees its change. Outside a request (a consumer's session) nothing waits for it."""
    info.setdefault(_HOLDS, []).append(task)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: commit when the endpoint returns, roll back when it raises;
    then wait for what the commit set going (`hold_answer`) before the answer leaves."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except ServiceError as exc:
            await (session.commit() if exc.keeps_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        finally:
            for task in session.info.pop(_HOLDS, ()):
                await task


# scope="function": commit happens before the response is sent, so a failed commit is a 500.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

M = TypeVar("M", bound=SQLModel)


async def get_by_id(
    session: AsyncSession, model: type[M], key: Any, *, for_update: bool = False
) -> M | None:
    """The row of `model` with primary key `key`; `for_update` locks it (SELECT ... FOR UPDATE)
    for the rest of the transaction - the way to read a row the use case is about to change.
    A locked read refreshes a copy the session already holds (`populate_existing`): the row
    may have changed between that earlier read and the lock."""
    (primary_key,) = inspect(model).primary_key
    stmt = select(model).where(primary_key == key)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.exec(stmt)).one_or_none()


def database_check(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
    """A readiness check (`app.state.readiness`): the database answers a query."""

    async def database() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    return database
