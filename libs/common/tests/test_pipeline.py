"""The whole pipeline - record_event → relay → bus → inbox - through a broker cut mid-burst."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sqlalchemy import column, func, insert, table
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Envelope,
    EventBus,
    EventData,
    InboxHandlers,
    OutboxRelay,
    record_event,
)
from krika_common.testing import eventually
from krika_common.testing.broker import TcpProxy

Sessionmaker = async_sessionmaker[AsyncSession]
handled_event = table("handled_event", column("event_id"))


class BurstPing(EventData):
    event_type = "test.burst_ping"
    event_version = 1

    n: int


async def test_broker_cut_during_a_burst_loses_and_doubles_nothing(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    amqp_proxy: TcpProxy,
    amqp_url: str,
) -> None:
    total, per_transaction = 1500, 10
    handlers = InboxHandlers()

    @handlers.on(BurstPing, consumer="test.burst")
    async def write_handled(session: AsyncSession, envelope: Envelope) -> None:
        await session.exec(insert(handled_event).values(event_id=envelope.id))

    # Both ends go through the proxy: the cut hits the relay's publishes and confirms, and the
    # consumer's deliveries and acks, whatever is in flight at that moment.
    url = amqp_proxy.url_for(amqp_url)
    consumer = event_bus_factory(url=url, publish_timeout=1.0, reconnect_interval=0.2)
    handlers.subscribe(consumer, sessionmaker)
    await consumer.connect()
    await consumer.start()
    publisher = event_bus_factory("relay", url=url, publish_timeout=1.0, reconnect_interval=0.2)
    await publisher.connect()
    relay = OutboxRelay(sessionmaker, publisher, poll_interval=0.05, max_backoff=0.3)
    relay_task = asyncio.create_task(relay.run())
    written: list[str] = []

    async def write() -> None:
        for start in range(0, total, per_transaction):
            async with sessionmaker() as session, session.begin():
                for n in range(start, start + per_transaction):
                    envelope = await record_event(session, BurstPing(n=n), producer="test")
                    written.append(str(envelope.id))
            await asyncio.sleep(0)

    async def handled() -> int:
        async with sessionmaker() as session:
            query = select(func.count()).select_from(handled_event)
            return (await session.exec(query)).one()

    async def under_way() -> bool:
        return await handled() > total // 5

    async def all_handled() -> bool:
        return await handled() >= total

    writer = asyncio.create_task(write())
    try:
        await eventually(under_way, within=30, what="burst under way")
        amqp_proxy.disable()  # cut: every live connection dropped, new ones refused
        await asyncio.sleep(1.0)
        amqp_proxy.enable()
        await writer
        await eventually(all_handled, within=60, what="all handled")
        await asyncio.sleep(1.0)  # a redelivered duplicate would have landed by now
        assert await relay.refresh_metrics() == 0
    finally:
        for task in (writer, relay_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async with sessionmaker() as session:
        per_event = (
            await session.exec(
                select(handled_event.c.event_id, func.count()).group_by(handled_event.c.event_id)
            )
        ).all()
    assert len(written) == total
    assert sorted(str(event_id) for event_id, _ in per_event) == sorted(written)
    assert {count for _, count in per_event} == {1}
