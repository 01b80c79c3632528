"""The broker in tests: this run's own exchange, buses on it, an observer of everything
published, a TCP path to the broker that a test can cut, and queue depths.

`event_bus_factory` makes buses on this run's exchange, `events_observer` sees what is
published on it, `amqp_proxy` is a path to the broker that a test can cut (`disable()`) and
restore (`enable()`). `handle_events(handlers, sessionmaker, *events)` runs a service's inbox
handlers on events as its worker would, without a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import Delivery, Envelope, EventData, InboxHandlers
from krika_common.testing import eventually

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

    from krika_common.events import EventBus


@pytest.fixture(scope="session")
def events_exchange(run_id: str) -> str:
    """A topic exchange of this run's own, so parallel runs never see each other's events."""
    return f"krika.events.test.{run_id}"


class TcpProxy:
    """A local TCP forwarder to a server that a test can switch off (dropping live connections,
    refusing new ones) and on again: a broker outage without touching the broker."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.enabled = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        from yarl import URL

        return str(URL(url).with_host("127.0.0.1").with_port(self.port))

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def disable(self) -> None:
        """Drop every live connection; new ones are closed as soon as they are accepted."""
        self.enabled = False
        self.drop_connections()

    def enable(self) -> None:
        self.enabled = True

    def drop_connections(self) -> None:
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.disable()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@pytest_asyncio.fixture
async def amqp_proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A switchable proxy to the test broker; connect through `amqp_proxy.url_for(amqp_url)`."""
    from yarl import URL

    target = URL(amqp_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5672).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest_asyncio.fixture(scope="session")
async def _events_exchange_cleanup(amqp_url: str, events_exchange: str) -> AsyncIterator[None]:
    """Deletes this run's events exchange at the end of the session."""
    yield
    import aio_pika

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(events_exchange)


@pytest_asyncio.fixture
async def event_bus_factory(
    amqp_url: str, events_exchange: str, run_id: str, _events_exchange_cleanup: None
) -> AsyncIterator[Callable[..., EventBus]]:
    """Makes `EventBus`es on this run's exchange, each with its own short-lived queues (the
    caller subscribes, connects and starts them); all are closed after the test.

    `make(service="test", *, url=None, **EventBus kwargs)`.
    """
    from krika_common.events import EventBus

    buses: list[EventBus] = []

    def make(service: str = "test", *, url: str | None = None, **kw: Any) -> EventBus:
        kw.setdefault("exchange", events_exchange)
        kw.setdefault("queue", f"{service}.events.test.{run_id}.{uuid.uuid4().hex[:8]}")
        kw.setdefault("queue_expires", 120)
        kw.setdefault("reconnect_interval", 0.2)
        kw.setdefault("publish_timeout", 2.0)
        kw.setdefault("retry_delays", (0.05, 0.1))
        bus = EventBus(url or amqp_url, service=service, **kw)
        buses.append(bus)
        return bus

    yield make
    for bus in reversed(buses):
        await bus.close()


class EventsObserver:
    """Every message published on the run's events exchange while the fixture is alive."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def envelopes(self, event_type: str | None = None) -> list[Envelope]:
        from krika_common.events import Envelope

        found = [Envelope.model_validate_json(m.body) for m in self.messages]
        return [e for e in found if event_type is None or e.type == event_type]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        await eventually(
            lambda: len(self.messages) >= count, within=within, what=f"{count} event(s)"
        )


@pytest_asyncio.fixture
async def events_observer(amqp_url: str, events_exchange: str) -> AsyncIterator[EventsObserver]:
    """Sees what is published on `events_exchange` (a queue of its own bound to `#`)."""
    import aio_pika

    observer = EventsObserver()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        await queue.consume(observer._on_message, no_ack=True)
        yield observer


async def queue_depth(amqp_url: str, name: str) -> int:
    """Ready (not in-flight) messages in the queue `name`, asked on a connection of its own."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def handle_events(
    handlers: InboxHandlers,
    sessionmaker: async_sessionmaker[AsyncSession],
    *events: EventData | Envelope,
) -> None:
    """Hand events to a service's inbox handlers as its worker would (one batch, through the
    inbox); a handler's error is raised here. Event data is wrapped in a fresh envelope."""
    envelopes = [
        e if isinstance(e, Envelope) else Envelope.wrap(e, producer="test") for e in events
    ]
    outcomes = await handlers.handle_batch(sessionmaker, [Delivery(e, {}) for e in envelopes])
    for outcome in outcomes:
        if outcome is not None:
            raise outcome
