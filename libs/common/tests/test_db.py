"""krika_common.db: a locked read sees the row as it is when the lock is granted."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import get_by_id
from krika_common.events import OutboxMessage


async def test_a_locked_read_refreshes_a_copy_the_session_holds(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        row = OutboxMessage(event_id=uuid.uuid4(), event_type="test.before", envelope={})
        session.add(row)
    async with sessionmaker() as reader:
        await reader.begin()
        held = await get_by_id(reader, OutboxMessage, row.id)
        assert held is not None
        assert held.event_type == "test.before"
        # Another transaction changes the row after this session read it...
        async with sessionmaker() as writer, writer.begin():
            await writer.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id)
                .values(event_type="test.after")
            )
        # ...so the locked read must not answer the session's stale copy.
        locked = await get_by_id(reader, OutboxMessage, row.id, for_update=True)
        assert locked is held
        assert locked.event_type == "test.after"
        await reader.rollback()
