"""Outbox + relay against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Envelope,
    EventBus,
    EventData,
    OutboxMessage,
    OutboxPublishFailed,
    OutboxRelay,
    record_event,
)
from krika_common.events.outbox import OUTBOX_PENDING, RELAY_LOCK
from krika_common.telemetry import request_id_var, trace_id_var
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver, TcpProxy


class OutboxPing(EventData):
    event_type = "test.outbox_ping"
    event_version = 1

    n: int


Sessionmaker = async_sessionmaker[AsyncSession]


async def outbox_rows(sessionmaker: Sessionmaker) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id))
        return list((await session.exec(query)).all())


async def commit_pings(sessionmaker: Sessionmaker, *numbers: int) -> list[str]:
    async with sessionmaker() as session, session.begin():
        return [
            str((await record_event(session, OutboxPing(n=n), producer="test")).id) for n in numbers
        ]


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_event_of_a_rolled_back_transaction_is_never_published(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    bus = event_bus_factory()
    await bus.connect()
    async with sessionmaker() as session:
        await record_event(session, OutboxPing(n=1), producer="test")
        assert len((await session.exec(select(OutboxMessage))).all()) == 1  # in the transaction
        await session.rollback()

    async with running(OutboxRelay(sessionmaker, bus, poll_interval=0.02).run()):
        await asyncio.sleep(0.5)
        assert events_observer.messages == []
        assert await outbox_rows(sessionmaker) == []
        # The same relay does publish a committed event: the silence above is not a dead relay.
        [committed] = await commit_pings(sessionmaker, 2)
        await events_observer.wait_for(1)

    assert [str(e.id) for e in events_observer.envelopes()] == [committed]


async def test_event_committed_while_broker_unreachable_is_published_once_it_is_back(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
    amqp_proxy: TcpProxy,
    amqp_url: str,
) -> None:
    bus = event_bus_factory(url=amqp_proxy.url_for(amqp_url), publish_timeout=0.5)
    await bus.connect()
    relay = OutboxRelay(sessionmaker, bus, poll_interval=0.02, max_backoff=0.2)

    async with running(relay.run()):
        amqp_proxy.disable()
        [event_id] = await commit_pings(sessionmaker, 1)

        async def relay_failed_twice() -> bool:
            return (await outbox_rows(sessionmaker))[0].attempts >= 2

        await eventually(relay_failed_twice, what="relay retrying")
        [row] = await outbox_rows(sessionmaker)
        assert row.published_at is None
        assert row.last_error is not None
        assert "BrokerUnavailable" in row.last_error
        assert events_observer.messages == []
        assert await relay.refresh_metrics() == 1
        assert OUTBOX_PENDING.labels("test")._value.get() == 1

        amqp_proxy.enable()
        await events_observer.wait_for(1, within=10)
        await asyncio.sleep(0.3)  # a second copy would arrive by now

    assert [str(e.id) for e in events_observer.envelopes()] == [event_id]
    [row] = await outbox_rows(sessionmaker)
    assert row.published_at is not None
    assert await relay.refresh_metrics() == 0


async def test_two_relays_never_publish_a_row_twice_and_keep_commit_order(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    event_ids = await commit_pings(sessionmaker, *range(200))
    relays = []
    for _ in range(2):
        bus = event_bus_factory()
        await bus.connect()
        relays.append(OutboxRelay(sessionmaker, bus, batch_size=10))

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while await relay.refresh_metrics():
            total += await relay.publish_pending()
            await asyncio.sleep(0)
        return total

    first, second = await asyncio.gather(*(drain(r) for r in relays))

    assert first + second == 200
    await events_observer.wait_for(200)
    await asyncio.sleep(0.2)
    # One relay at a time holds the turn, so the broker sees the rows in commit order.
    assert [str(e.id) for e in events_observer.envelopes()] == event_ids
    assert all(row.published_at is not None for row in await outbox_rows(sessionmaker))


async def test_relay_waits_its_turn_while_another_relay_publishes(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    event_ids = await commit_pings(sessionmaker, 1, 2, 3)
    bus = event_bus_factory()
    await bus.connect()
    relay = OutboxRelay(sessionmaker, bus)

    async with sessionmaker() as other_relay, other_relay.begin():
        await other_relay.exec(select(func.pg_advisory_xact_lock(RELAY_LOCK)))
        # It neither waits for the other relay's transaction nor publishes beside it.
        assert await asyncio.wait_for(relay.publish_pending(), 3) == 0

    assert await relay.publish_pending() == 3
    await events_observer.wait_for(3)
    assert [str(e.id) for e in events_observer.envelopes()] == event_ids


async def test_relay_wakes_on_commit_without_polling(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    bus = event_bus_factory()
    await bus.connect()
    # A poll interval far longer than the test: only the NOTIFY can wake it in time.
    async with running(OutboxRelay(sessionmaker, bus, poll_interval=60).run()):
        await asyncio.sleep(0.5)  # listening, and past its first round
        [event_id] = await commit_pings(sessionmaker, 1)
        await events_observer.wait_for(1, within=5)

    assert [str(e.id) for e in events_observer.envelopes()] == [event_id]


async def test_relay_publishes_in_commit_order(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    await commit_pings(sessionmaker, *range(10))
    await commit_pings(sessionmaker, *range(10, 25))
    bus = event_bus_factory()
    await bus.connect()

    async with running(OutboxRelay(sessionmaker, bus, batch_size=7, poll_interval=0.02).run()):
        await events_observer.wait_for(25)

    assert [e.data["n"] for e in events_observer.envelopes()] == list(range(25))


async def test_relay_stops_at_a_row_it_cannot_publish_and_keeps_the_rest_for_later(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    [first] = await commit_pings(sessionmaker, 1)
    async with sessionmaker() as session, session.begin():
        session.add(
            OutboxMessage(
                event_id=uuid.uuid4(), event_type="test.outbox_ping", envelope={"not": "valid"}
            )
        )
    [after] = await commit_pings(sessionmaker, 3)
    bus = event_bus_factory()
    await bus.connect()

    with pytest.raises(OutboxPublishFailed) as failed:
        await OutboxRelay(sessionmaker, bus).publish_pending()

    assert failed.value.published == 1
    rows = await outbox_rows(sessionmaker)
    assert [(r.published_at is not None, r.attempts) for r in rows] == [
        (True, 0),
        (False, 1),
        (False, 1),
    ]
    await events_observer.wait_for(1)
    await asyncio.sleep(0.2)
    assert [str(e.id) for e in events_observer.envelopes()] == [first]
    assert after not in [str(e.id) for e in events_observer.envelopes()]


async def test_event_carries_the_request_id_and_trace_to_the_broker(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    request_token = request_id_var.set("req-42")
    trace_token = trace_id_var.set(trace_id)
    try:
        [event_id] = await commit_pings(sessionmaker, 1)
    finally:
        request_id_var.reset(request_token)
        trace_id_var.reset(trace_token)
    bus = event_bus_factory()
    await bus.connect()

    assert await OutboxRelay(sessionmaker, bus).publish_pending() == 1

    await events_observer.wait_for(1)
    [message] = events_observer.messages
    [envelope] = events_observer.envelopes()
    assert message.message_id == event_id == str(envelope.id)
    assert message.type == "test.outbox_ping"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2
    assert envelope.correlation_id == "req-42"
    traceparent = message.headers["traceparent"]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[1] == trace_id


async def test_relay_cancelled_mid_round_marks_what_the_broker_confirmed(
    sessionmaker: Sessionmaker,
    event_bus_factory: Callable[..., EventBus],
    events_observer: EventsObserver,
) -> None:
    bus = event_bus_factory()
    await bus.connect()
    publishing = asyncio.Event()
    publish = bus.publish

    async def slow_publish(envelope: Envelope, headers: Mapping[str, Any] | None = None) -> None:
        publishing.set()
        await asyncio.sleep(0.3)  # the shutdown lands while the confirms are in flight
        await publish(envelope, headers)

    bus.publish = slow_publish  # type: ignore[method-assign]
    event_ids = await commit_pings(sessionmaker, 1, 2, 3)
    relay = asyncio.create_task(OutboxRelay(sessionmaker, bus, poll_interval=60).run())
    await asyncio.wait_for(publishing.wait(), 5)

    relay.cancel()  # as the worker's lifespan does on shutdown
    with contextlib.suppress(asyncio.CancelledError):
        await relay

    rows = await outbox_rows(sessionmaker)
    assert [r.published_at is not None for r in rows] == [True, True, True]
    await events_observer.wait_for(3)
    assert [str(e.id) for e in events_observer.envelopes()] == event_ids
