"""EventBus consumers: inbox deduplication, retries, DLQ, reconnects, readiness (real broker)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import column, func, insert, table
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    BrokerUnavailable,
    Envelope,
    EventBus,
    EventData,
    InboxHandlers,
    InboxMessage,
)
from krika_common.events.bus import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_FAILED
from krika_common.telemetry import request_id_var, trace_id_var
from krika_common.testing import eventually
from krika_common.testing.broker import TcpProxy, queue_depth

Sessionmaker = async_sessionmaker[AsyncSession]


class BusPing(EventData):
    event_type = "test.bus_ping"
    event_version = 1

    n: int


def ping(n: int = 1) -> Envelope:
    return Envelope.wrap(BusPing(n=n), producer="test")


# Created by conftest; test handlers write one row per run.
handled_event = table("handled_event", column("event_id"))


async def handled_count(sessionmaker: Sessionmaker, event_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        query = (
            select(func.count())
            .select_from(handled_event)
            .where(handled_event.c.event_id == event_id)
        )
        return (await session.exec(query)).one()


async def inbox_count(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return (await session.exec(select(func.count()).select_from(InboxMessage))).one()


async def write_handled(session: AsyncSession, envelope: Envelope) -> None:
    await session.exec(insert(handled_event).values(event_id=envelope.id))


async def take_one(amqp_url: str, queue: str) -> AbstractIncomingMessage:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        message = await declared.get(no_ack=True, fail=True, timeout=5)
        assert message is not None
        return message


async def test_duplicate_delivery_runs_the_handler_effect_once_and_acks_both(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus], amqp_url: str
) -> None:
    handlers = InboxHandlers()
    handlers.add("test.bus_ping", "test.handled", write_handled)
    bus = event_bus_factory()
    handlers.subscribe(bus, sessionmaker)
    await bus.connect()
    await bus.start()
    consumed = consumed_counter(bus)
    envelope = ping()

    await bus.publish(envelope)
    await bus.publish(envelope)

    await eventually(lambda: consumed() == 2, what="both deliveries settled")
    assert await handled_count(sessionmaker, envelope.id) == 1
    assert await inbox_count(sessionmaker) == 1
    await bus.close()  # anything left unacknowledged would go back to the queue
    assert await queue_depth(amqp_url, bus.queue_name) == 0


async def test_failed_handler_rolls_back_its_effect_and_inbox_row_then_retry_succeeds(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus], amqp_url: str
) -> None:
    runs = 0
    handlers = InboxHandlers()

    @handlers.on(BusPing, consumer="test.flaky")
    async def fails_the_first_time(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal runs
        runs += 1
        await write_handled(session, envelope)
        if runs == 1:
            raise RuntimeError("database hiccup")

    bus = event_bus_factory()
    handlers.subscribe(bus, sessionmaker)
    await bus.connect()
    await bus.start()
    envelope = ping()

    await bus.publish(envelope)

    await eventually(lambda: runs == 2, what="retried once")
    await eventually(lambda: handled_count(sessionmaker, envelope.id), what="effect committed")
    await asyncio.sleep(0.2)
    assert runs == 2
    assert await handled_count(sessionmaker, envelope.id) == 1
    assert await inbox_count(sessionmaker) == 1


async def test_a_failing_event_in_a_batch_is_retried_alone_and_the_rest_commit_once(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus]
) -> None:
    failures = 0
    handlers = InboxHandlers()
    handlers.add("test.bus_ping", "test.handled", write_handled)

    @handlers.on(BusPing, consumer="test.second")
    async def fails_on_13_once(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal failures
        if envelope.data["n"] == 13 and failures == 0:
            failures += 1
            raise RuntimeError("not yet")

    bus = event_bus_factory(retry_delays=(0.2,))
    handlers.subscribe(bus, sessionmaker)
    await bus.connect()
    await bus.start()
    publisher = event_bus_factory("publisher")
    await publisher.connect()
    envelopes = [ping(n) for n in range(40)]
    consumed = consumed_counter(bus)

    await asyncio.gather(*(publisher.publish(e) for e in envelopes))

    await eventually(lambda: consumed() == 40, what="every event handled")
    assert failures == 1
    for envelope in envelopes:
        assert await handled_count(sessionmaker, envelope.id) == 1
    # Two consumers, each recorded once per event.
    assert await inbox_count(sessionmaker) == 80


async def test_inbox_event_that_keeps_failing_ends_in_the_dlq_with_no_effect_left(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus], amqp_url: str
) -> None:
    attempts = 0
    handlers = InboxHandlers()

    @handlers.on(BusPing, consumer="test.doomed")
    async def writes_then_fails(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        await write_handled(session, envelope)
        raise ValueError("order not found")

    bus = event_bus_factory(retry_delays=(0.05, 0.1))
    handlers.subscribe(bus, sessionmaker)
    await bus.connect()
    await bus.start()
    envelope = ping(9)

    await bus.publish(envelope)

    await eventually(lambda: bus.dlq_depth(), what="message in the DLQ")
    await asyncio.sleep(0.3)  # a further attempt would have happened by now
    assert attempts == bus.max_attempts == 3
    assert await handled_count(sessionmaker, envelope.id) == 0
    assert await inbox_count(sessionmaker) == 0
    await bus.close()
    assert await queue_depth(amqp_url, bus.queue_name) == 0
    dead = await take_one(amqp_url, bus.dlq_name)
    assert dead.headers[ATTEMPT_HEADER] == 3
    assert dead.headers[ERROR_HEADER] == "ValueError: order not found"
    assert dead.message_id == str(envelope.id)


async def test_batched_consumer_handles_events_in_publication_order(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus]
) -> None:
    seen: list[int] = []
    handlers = InboxHandlers()

    @handlers.on(BusPing, consumer="test.ordered")
    async def record(session: AsyncSession, envelope: Envelope) -> None:
        seen.append(envelope.data["n"])

    bus = event_bus_factory(prefetch=64)
    handlers.subscribe(bus, sessionmaker, max_batch=16)
    await bus.connect()
    await bus.start()
    publisher = event_bus_factory("publisher")
    await publisher.connect()

    # All in flight at once, as the relay publishes.
    await asyncio.gather(*(publisher.publish(ping(n)) for n in range(300)))

    await eventually(lambda: len(seen) == 300, what="all handled")
    assert seen == list(range(300))


def consumed_counter(bus: EventBus) -> Callable[[], float]:
    """How many test.bus_ping events `bus` has acknowledged as handled since this call."""
    counter = EVENTS_CONSUMED.labels(bus.service, "test.bus_ping")
    before = counter._value.get()
    return lambda: counter._value.get() - before


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_handler_that_keeps_failing_ends_in_the_dlq_after_max_attempts(
    event_bus_factory: Callable[..., EventBus], amqp_url: str, queue_type: str
) -> None:
    attempts: list[int] = []

    async def always_fails(envelope: Envelope) -> None:
        attempts.append(envelope.data["n"])
        raise ValueError("no such order")

    bus = event_bus_factory(retry_delays=(0.05, 0.1), queue_type=queue_type)
    bus.subscribe("test.bus_ping", always_fails)
    await bus.connect()
    await bus.start()
    failed_before = EVENTS_FAILED.labels("test", "test.bus_ping")._value.get()
    dead_before = EVENTS_DEAD_LETTERED.labels("test", "test.bus_ping")._value.get()
    envelope = ping(7)

    await bus.publish(envelope)

    await eventually(lambda: bus.dlq_depth(), what="message in the DLQ")
    await asyncio.sleep(0.3)  # a further attempt would have happened by now
    assert bus.max_attempts == 3
    assert attempts == [7, 7, 7]
    assert await bus.dlq_depth() == 1
    assert EVENTS_FAILED.labels("test", "test.bus_ping")._value.get() == failed_before + 3
    assert EVENTS_DEAD_LETTERED.labels("test", "test.bus_ping")._value.get() == dead_before + 1
    await bus.close()
    assert await queue_depth(amqp_url, bus.queue_name) == 0
    for retry_queue in bus.retry_queue_names:
        assert await queue_depth(amqp_url, retry_queue) == 0
    dead = await take_one(amqp_url, bus.dlq_name)
    assert dead.headers[ATTEMPT_HEADER] == 3
    assert dead.headers[ERROR_HEADER] == "ValueError: no such order"
    assert dead.message_id == str(envelope.id)
    assert Envelope.model_validate_json(dead.body) == envelope


async def test_unparseable_message_goes_straight_to_the_dlq(
    event_bus_factory: Callable[..., EventBus], amqp_url: str, events_exchange: str
) -> None:
    calls = 0

    async def handler(envelope: Envelope) -> None:
        nonlocal calls
        calls += 1

    bus = event_bus_factory()
    bus.subscribe("test.bus_ping", handler)
    await bus.connect()
    await bus.start()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(events_exchange)
        await exchange.publish(aio_pika.Message(b"{not json"), "test.bus_ping")

    await eventually(lambda: bus.dlq_depth(), what="message in the DLQ")
    assert calls == 0
    dead = await take_one(amqp_url, bus.dlq_name)
    assert dead.body == b"{not json"
    assert dead.headers[ATTEMPT_HEADER] == 1
    error = dead.headers[ERROR_HEADER]
    assert isinstance(error, str)
    assert error.startswith("ValidationError")


async def test_handler_logs_carry_the_event_trace_and_correlation_ids(
    event_bus_factory: Callable[..., EventBus],
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def handler(envelope: Envelope) -> None:
        seen.append((trace_id_var.get(), request_id_var.get()))

    bus = event_bus_factory()
    bus.subscribe("test.bus_ping", handler)
    await bus.connect()
    await bus.start()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    envelope = Envelope.wrap(BusPing(n=1), producer="test", correlation_id="req-7")

    await bus.publish(envelope, {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})

    await eventually(lambda: bool(seen), what="handled")
    assert seen == [(trace_id, "req-7")]


async def test_inbox_handler_logs_carry_each_event_trace_and_correlation_ids(
    sessionmaker: Sessionmaker, event_bus_factory: Callable[..., EventBus]
) -> None:
    seen: dict[int, tuple[str | None, str | None]] = {}
    handlers = InboxHandlers()

    @handlers.on(BusPing, consumer="test.traced")
    async def record(session: AsyncSession, envelope: Envelope) -> None:
        seen[envelope.data["n"]] = (trace_id_var.get(), request_id_var.get())

    bus = event_bus_factory()
    handlers.subscribe(bus, sessionmaker)
    await bus.connect()
    await bus.start()
    trace_ids = {n: f"{n:032x}" for n in range(1, 6)}

    # Published together, so they are likely handled in one batch: each keeps its own ids.
    await asyncio.gather(
        *(
            bus.publish(
                Envelope.wrap(BusPing(n=n), producer="test", correlation_id=f"req-{n}"),
                {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            )
            for n, trace_id in trace_ids.items()
        )
    )

    await eventually(lambda: len(seen) == 5, what="handled")
    assert seen == {n: (trace_id, f"req-{n}") for n, trace_id in trace_ids.items()}


async def test_consumer_survives_a_dropped_broker_connection(
    event_bus_factory: Callable[..., EventBus], amqp_proxy: TcpProxy, amqp_url: str
) -> None:
    received: list[int] = []

    async def handler(envelope: Envelope) -> None:
        received.append(envelope.data["n"])

    consumer = event_bus_factory(url=amqp_proxy.url_for(amqp_url))
    consumer.subscribe("test.bus_ping", handler)
    await consumer.connect()
    await consumer.start()
    publisher = event_bus_factory("publisher")
    await publisher.connect()
    await publisher.publish(ping(1))
    await eventually(lambda: received == [1], what="first event")

    amqp_proxy.disable()
    await eventually(lambda: not consumer.is_consuming(), what="consumer notices the drop")
    with pytest.raises(BrokerUnavailable):
        await consumer.check_ready()
    await publisher.publish(ping(2))  # waits in the durable queue meanwhile

    amqp_proxy.enable()
    await eventually(consumer.is_consuming, within=10, what="consumer back")
    await eventually(lambda: 2 in received, within=10, what="queued event consumed")
    await consumer.check_ready()
    await publisher.publish(ping(3))
    await eventually(lambda: 3 in received, what="new event consumed")
    # At-least-once: event 1 comes again if its ack was lost in the drop.
    assert set(received) == {1, 2, 3}


async def test_readiness_fails_unless_consuming(
    event_bus_factory: Callable[..., EventBus],
) -> None:
    async def handler(envelope: Envelope) -> None:
        return None

    bus = event_bus_factory()
    bus.subscribe("test.bus_ping", handler)
    with pytest.raises(BrokerUnavailable):
        await bus.check_ready()  # not even connected
    await bus.connect()
    assert not bus.is_consuming()
    with pytest.raises(BrokerUnavailable):
        await bus.check_ready()  # connected, but not consuming

    await bus.start()
    assert bus.is_consuming()
    await bus.check_ready()

    await bus.close()
    assert not bus.is_consuming()
    with pytest.raises(BrokerUnavailable):
        await bus.check_ready()


async def test_connect_waits_for_the_broker_and_never_logs_the_password(
    event_bus_factory: Callable[..., EventBus],
    amqp_proxy: TcpProxy,
    amqp_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="krika_common.events.bus")
    amqp_proxy.disable()
    bus = event_bus_factory(url=amqp_proxy.url_for(amqp_url))
    connecting = asyncio.create_task(bus.connect())
    await asyncio.sleep(0.6)
    assert not connecting.done()

    amqp_proxy.enable()
    await asyncio.wait_for(connecting, 10)
    await bus.check_ready()

    amqp_proxy.disable()
    secret_url = amqp_proxy.url_for("amqp://guest:s3cr3t-pw@127.0.0.1:5672/")
    doomed = event_bus_factory(url=secret_url, connect_deadline=0.5)
    with pytest.raises(BrokerUnavailable):
        await doomed.connect()
    assert "unreachable" in caplog.text
    assert "s3cr3t-pw" not in caplog.text
