"""Redis caches of public representations (a service's page, the category tree).

Keys, per cached thing `name` ("service:<id>", "categories"):

    catalog:v1:gen:<name>          its generation, INCRed by every write that changes it
    catalog:v1:page:<name>:<gen>   the cached JSON of that generation (TTL)

A reader takes the generation and the page in one round trip; on a miss it reads the database
and stores the page under the generation it saw. A writer bumps the generation twice: inside
its transaction (no reader takes the old page from the cache once the change is committed) and
after the commit (a page a reader built from the database between the first bump and the
commit lands under a generation nobody reads). Redis failing or slow is a miss: the database
answers, and a write's bump that could not reach Redis is bounded by the pages' TTL.

Only public representations are cached (never the owner's view of a draft, never signed URLs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session as SyncSession
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import hold_answer

log = logging.getLogger(__name__)

PREFIX = "catalog:v1"
# A generation outlives every page stored under it (page TTLs are at most an hour).
GENERATION_TTL = 7 * 24 * 3600
_STALE = "catalog.stale"
_background: set[asyncio.Task[None]] = set()

# KEYS[1] generation key; ARGV[1] page key prefix. Answers {generation, page or nothing}.
_READ = """
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g)}
"""


def service_page(service_id: object) -> str:
    return f"service:{service_id}"


CATEGORIES = "categories"


class PageCache:
    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self.redis = redis
        self.timeout = timeout

    async def read(self, name: str) -> tuple[str | None, bytes | None]:
        """(generation, page): page None on a miss; generation None when Redis failed."""
        try:
            async with asyncio.timeout(self.timeout):
                found = await self.redis.eval(
                    _READ, 1, f"{PREFIX}:gen:{name}", f"{PREFIX}:page:{name}:"
                )
        except Exception as exc:
            log.warning("cache read failed (%s); using the database", type(exc).__name__)
            return None, None
        generation = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
        page = found[1] if len(found) > 1 and found[1] else None
        return generation, page

    async def write(self, name: str, generation: str | None, page: bytes, ttl: int) -> None:
        if generation is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.set(f"{PREFIX}:page:{name}:{generation}", page, ex=ttl)
        except Exception as exc:
            log.warning("cache write failed (%s)", type(exc).__name__)

    async def invalidate(self, names: Iterable[str]) -> None:
        names = sorted(set(names))
        if not names:
            return
        try:
            async with asyncio.timeout(self.timeout):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.incr(f"{PREFIX}:gen:{name}")
                        pipe.expire(f"{PREFIX}:gen:{name}", GENERATION_TTL)
                    await pipe.execute()
        except Exception as exc:
            log.warning("cache invalidation failed (%s); pages expire by TTL", type(exc).__name__)

    async def stale(self, session: AsyncSession, *names: str) -> None:
        """The transaction of `session` changes what `names` cache: invalidate them now and
        again once it commits."""
        await self.invalidate(names)
        info = session.info
        pending: set[str] | None = info.get(_STALE)
        if pending is None:
            pending = info[_STALE] = set()
            event.listen(session.sync_session, "after_commit", self._after_commit, once=True)
        pending.update(names)

    def _after_commit(self, sync_session: SyncSession) -> None:
        names = sync_session.info.pop(_STALE, None)
        if names:
            task = asyncio.get_running_loop().create_task(self.invalidate(names))
            _background.add(task)
            task.add_done_callback(_background.discard)
            hold_answer(sync_session.info, task)  # a request answers after it


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for one-statement public reads (search, lists): on the read engine, in
    autocommit (no BEGIN/COMMIT round trips) and without a ping per checkout; a connection
    that went bad fails its statement once and is replaced."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with maker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
