"""The event bus on RabbitMQ (aio-pika): publish with confirms, consume with retries and a DLQ.

Topology for a service (queue `<service>.events` by default):

    exchange  krika.events (topic, durable) --[event type]--> <queue>
    <queue>.retry.<ms>  x-message-ttl=<ms>, dead-letters back to <queue> (default exchange)
    <queue>.dlq         where a message lands after the last attempt, or when unparseable

A failed handler's message is republished (confirmed) to the next retry queue with our own
attempt counter `x-krika-attempt`, then the original is acknowledged; after the last attempt
it goes to the DLQ with `x-krika-error`. Handlers must be idempotent (see `InboxHandlers`):
delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
    HeadersType,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from yarl import URL

from krika_common.config import KrikaSettings, redact_url
from krika_common.events.envelope import Envelope
from krika_common.events.tracing import TRACEPARENT, consumer_context, current_traceparent

log = logging.getLogger(__name__)

EventHandler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a batch handler: the event and the message's headers."""

    envelope: Envelope
    headers: Mapping[str, Any]


# Handles several deliveries at once; returns, per delivery and in order, None (done: the bus
# acknowledges it) or the exception that failed it (the bus retries or dead-letters it).
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[Sequence[Exception | None]]]


@dataclass(slots=True)
class _Pending:
    message: AbstractIncomingMessage
    delivery: Delivery
    attempt: int
    settled: asyncio.Future[None]


ATTEMPT_HEADER = "x-krika-attempt"
ERROR_HEADER = "x-krika-error"
# Broker-written dead-letter bookkeeping; not ours to copy into a republished message.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")

EVENTS_CONSUMED = Counter(
    "krika_events_consumed_total", "Events handled successfully", ["service", "event_type"]
)
EVENTS_FAILED = Counter(
    "krika_events_failed_total", "Event handler failures (each attempt)", ["service", "event_type"]
)
EVENTS_DEAD_LETTERED = Counter(
    "krika_events_dead_lettered_total", "Events sent to the DLQ", ["service", "event_type"]
)
EVENT_HANDLING_SECONDS = Histogram(
    "krika_event_handling_seconds", "Event handler duration", ["service", "event_type"]
)
DLQ_MESSAGES = Gauge("krika_dlq_messages", "Messages waiting in the DLQ", ["service", "queue"])


class BrokerUnavailable(ConnectionError):
    """The bus has no usable broker connection right now."""


def error_text(exc: BaseException, limit: int = 1000) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


def _attempt(headers: Mapping[str, Any]) -> int:
    value = headers.get(ATTEMPT_HEADER, 1)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


class EventBus:
    """One service's connection to the events exchange: publisher and (optionally) consumer.

    Use: `subscribe(...)` each handled type, `await connect()`, `await start()`;
    `await close()` in the lifespan's exit. A publish-only bus just connects.

    Limits: `prefetch` deliveries unacknowledged at once (so at most that many handlers run
    concurrently, and a batch is at most that big); each publish waits `publish_timeout` for
    its confirm; `close()` waits `shutdown_timeout` for handlers in flight.
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        service: str,
        exchange: str = "krika.events",
        queue: str | None = None,
        prefetch: int = 128,
        retry_delays: Sequence[float] = (1, 5, 30, 120),
        queue_expires: float | None = None,
        queue_type: Literal["classic", "quorum"] = "classic",
        connect_deadline: float | None = None,
        reconnect_interval: float = 2.0,
        publish_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.amqp_url = amqp_url
        self.service = service
        self.exchange_name = exchange
        self.queue_name = queue or f"{service}.events"
        self.dlq_name = f"{self.queue_name}.dlq"
        self.prefetch = prefetch
        self.retry_delays_ms = [max(1, round(d * 1000)) for d in retry_delays]
        self.retry_queue_names = [f"{self.queue_name}.retry.{ms}" for ms in self.retry_delays_ms]
        # For tests: queues the broker deletes once unused for this long (seconds).
        self.queue_expires = queue_expires
        # Quorum queues (replicated) for clustered production brokers. A queue's type is fixed
        # at declaration: switching an existing queue means deleting and redeclaring it.
        self.queue_type = queue_type
        self.connect_deadline = connect_deadline
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.shutdown_timeout = shutdown_timeout

        self._handlers: dict[str, EventHandler] = {}
        self._batch_handler: BatchHandler | None = None
        self._batch_types: frozenset[str] = frozenset()
        self.max_batch = 1
        self._batch_queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._batch_worker: asyncio.Task[None] | None = None
        # Strong references: the robust connection restores what these hold after a reconnect.
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._consume_channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._queue: AbstractRobustQueue | None = None
        self._dlq: AbstractRobustQueue | None = None
        self._retry_queues: list[AbstractRobustQueue] = []
        self._consumer_tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @classmethod
    def from_settings(cls, settings: KrikaSettings, **overrides: Any) -> EventBus:
        """The service's bus as its settings configure it (URL, exchange, queue type)."""
        options: dict[str, Any] = {
            "service": settings.service_name,
            "exchange": settings.events_exchange,
            "queue_type": settings.amqp_queue_type,
            **overrides,
        }
        return cls(settings.amqp_url, **options)

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_ms) + 1

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (retrying with backoff while the broker is down, until `connect_deadline`
        seconds if set), open the publish and consume channels, declare the exchange."""
        if self._connection is not None:
            return
        deadline = self.connect_deadline
        if deadline is not None:
            deadline += time.monotonic()
        attempt = 0
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(
                    self.amqp_url,
                    reconnect_interval=self.reconnect_interval,
                    timeout=max(self.publish_timeout, 1.0),
                    client_properties={"connection_name": f"{self.service} events"},
                )
                publish_channel = await connection.channel(publisher_confirms=True)
                consume_channel = await connection.channel(publisher_confirms=True)
                await consume_channel.set_qos(prefetch_count=self.prefetch)
                exchange = await publish_channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                break
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
                attempt += 1
                delay = min(5.0, 0.25 * 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
                if deadline is not None and time.monotonic() + delay > deadline:
                    log.error("broker %s unreachable, giving up", redact_url(self.amqp_url))
                    raise BrokerUnavailable(self._scrub(error_text(exc))) from None
                log.warning(
                    "broker %s unreachable (attempt %d: %s); retrying in %.1fs",
                    redact_url(self.amqp_url),
                    attempt,
                    self._scrub(error_text(exc)),
                    delay,
                )
                await asyncio.sleep(delay)
        self._connection = connection
        self._publish_channel = publish_channel
        self._consume_channel = consume_channel
        self._exchange = exchange
        log.info("connected to broker %s", redact_url(self.amqp_url))

    def _scrub(self, text: str) -> str:
        password = URL(self.amqp_url).password
        return text.replace(password, "***") if password else text

    def _connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    # --- publishing ---------------------------------------------------------------------------

    async def publish(self, envelope: Envelope, headers: Mapping[str, Any] | None = None) -> None:
        """Publish to the exchange (routing key = type), persistent, confirmed by the broker.

        Fails fast with `BrokerUnavailable` while disconnected, and after `publish_timeout`.
        """
        out: HeadersType = dict(headers or {})
        if TRACEPARENT not in out and (traceparent := current_traceparent()):
            out[TRACEPARENT] = traceparent
        message = aio_pika.Message(
            envelope.model_dump_json().encode(),
            headers=out,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope.id),
            type=envelope.type,
            timestamp=envelope.occurred_at,
            app_id=envelope.producer,
            correlation_id=envelope.correlation_id,
        )
        if self._exchange is None or not self._connected():
            raise BrokerUnavailable("not connected to the broker")
        await self._confirmed(self._exchange.publish(message, envelope.type, mandatory=False))

    async def _confirmed(self, publishing: Awaitable[Any]) -> None:
        # asyncio.timeout, not wait_for: no task per publish, and concurrent publishes reach the
        # channel in the order they were started (the relay relies on it).
        try:
            async with asyncio.timeout(self.publish_timeout):
                await publishing
        except TimeoutError as exc:
            raise BrokerUnavailable("broker did not confirm in time") from exc

    async def _send_to_queue(
        self, message: AbstractIncomingMessage, queue: str, **extra: Any
    ) -> None:
        """A confirmed copy of `message` (plus `extra` headers) to `queue` (default exchange)."""
        if self._publish_channel is None or not self._connected():
            raise BrokerUnavailable("not connected to the broker")
        headers: HeadersType = {
            k: v for k, v in message.headers.items() if not k.startswith(_BROKER_HEADERS)
        }
        headers.update(extra)
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            timestamp=message.timestamp,
            app_id=message.app_id,
            correlation_id=message.correlation_id,
        )
        exchange = self._publish_channel.default_exchange
        await self._confirmed(exchange.publish(copy, queue, mandatory=False))

    # --- consuming ----------------------------------------------------------------------------

    def subscribe(self, event_type: str, handler: EventHandler) -> None:
        """Handle `event_type` with `handler(envelope)`; call before `start()`."""
        if self._queue is not None:
            raise RuntimeError("subscribe before start()")
        if event_type in self._handlers:
            raise ValueError(f"{event_type} already has a handler")
        self._handlers[event_type] = handler

    def subscribe_batch(
        self, event_types: Iterable[str], handler: BatchHandler, *, max_batch: int = 100
    ) -> None:
        """Handle `event_types` in batches: `handler(deliveries)` gets up to `max_batch` of the
        messages that have arrived (at least one; it never waits to fill a batch), one batch at
        a time, in delivery order; messages are acknowledged after it returns. One batch
        handler per bus (the inbox's handlers are one); call before `start()`."""
        if self._queue is not None:
            raise RuntimeError("subscribe before start()")
        if self._batch_handler is not None:
            raise ValueError("the bus already has a batch handler")
        types = frozenset(event_types)
        if taken := types & self._handlers.keys():
            raise ValueError(f"{', '.join(sorted(taken))} already has a handler")
        self._batch_handler = handler
        self._batch_types = types
        self.max_batch = max(1, min(max_batch, self.prefetch))

    def _subscribed_types(self) -> list[str]:
        return sorted(self._handlers.keys() | self._batch_types)

    def _queue_arguments(self, **arguments: Any) -> dict[str, Any]:
        arguments["x-queue-type"] = self.queue_type
        if self.queue_expires is not None:
            arguments["x-expires"] = max(1, round(self.queue_expires * 1000))
        return arguments

    async def start(self) -> None:
        """Declare the queues (main, retries, DLQ), bind the subscribed types, start consuming."""
        if self._consumer_tag is not None:
            return
        if self._consume_channel is None:
            raise RuntimeError("connect() before start()")
        if not self._subscribed_types():
            raise RuntimeError("start() without any subscription")
        channel = self._consume_channel
        # Declared on this channel too, so restoring its bindings never waits on the other one.
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._dlq = await channel.declare_queue(
            self.dlq_name, durable=True, arguments=self._queue_arguments()
        )
        self._retry_queues = [
            await channel.declare_queue(
                name,
                durable=True,
                arguments=self._queue_arguments(
                    **{
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": self.queue_name,
                    }
                ),
            )
            for name, ms in zip(self.retry_queue_names, self.retry_delays_ms, strict=True)
        ]
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments=self._queue_arguments()
        )
        for event_type in self._subscribed_types():
            await queue.bind(exchange, routing_key=event_type)
        self._queue = queue
        if self._batch_handler is not None:
            self._batch_worker = asyncio.create_task(self._run_batches(self._batch_handler))
        self._consumer_tag = await queue.consume(self._on_message)
        log.info("consuming %s for %s", self.queue_name, ", ".join(self._subscribed_types()))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        except Exception:
            # Could not settle it (e.g. the retry copy was not confirmed): hand it back to the
            # broker for redelivery; if the channel is gone, the broker requeues it anyway.
            log.exception("event message %s requeued", message.message_id)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        attempt = _attempt(message.headers)
        try:
            envelope = Envelope.model_validate_json(message.body)
        except ValidationError as exc:
            log.error("unparseable event message %s dead-lettered", message.message_id)
            await self._dead_letter(message, "<invalid>", attempt, error_text(exc))
            return
        if envelope.type in self._batch_types:
            await self._through_batch(message, Delivery(envelope, message.headers), attempt)
            return
        handler = self._handlers.get(envelope.type)
        if handler is None:
            # A binding left by an older deployment: keep the message for a human, do not drop.
            await self._dead_letter(
                message, envelope.type, attempt, f"no handler for {envelope.type}"
            )
            return

        labels = (self.service, envelope.type)
        with consumer_context(f"{envelope.type} process", message.headers, envelope.correlation_id):
            started = time.perf_counter()
            try:
                await handler(envelope)
            except Exception as exc:
                EVENTS_FAILED.labels(*labels).inc()
                await self._retry_or_dead_letter(message, envelope, attempt, exc)
                return
            finally:
                EVENT_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            await message.ack()
            EVENTS_CONSUMED.labels(*labels).inc()

    async def _through_batch(
        self, message: AbstractIncomingMessage, delivery: Delivery, attempt: int
    ) -> None:
        """Queue the message for the batch worker; return once it has been settled."""
        settled = asyncio.get_running_loop().create_future()
        self._batch_queue.put_nowait(_Pending(message, delivery, attempt, settled))
        await settled

    async def _run_batches(self, handler: BatchHandler) -> None:
        """Take what has arrived (up to `max_batch`), handle it, settle each message; repeat."""
        while True:
            batch = [await self._batch_queue.get()]
            while len(batch) < self.max_batch and not self._batch_queue.empty():
                batch.append(self._batch_queue.get_nowait())
            try:
                await self._settle_batch(handler, batch)
            except BaseException as exc:  # including cancellation by close(): never left hanging
                for pending in batch:
                    if not pending.settled.done():
                        pending.settled.set_exception(
                            exc if isinstance(exc, Exception) else BrokerUnavailable("bus closed")
                        )
                if not isinstance(exc, Exception):
                    raise

    async def _settle_batch(self, handler: BatchHandler, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await handler([pending.delivery for pending in batch])
        except Exception as exc:  # the handler broke its contract: every message failed
            outcomes = [exc] * len(batch)
        if len(outcomes) != len(batch):
            raise RuntimeError(f"batch handler answered {len(outcomes)} of {len(batch)}")
        share = (time.perf_counter() - started) / len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            envelope = pending.delivery.envelope
            labels = (self.service, envelope.type)
            EVENT_HANDLING_SECONDS.labels(*labels).observe(share)
            try:
                if outcome is None:
                    await pending.message.ack()
                    EVENTS_CONSUMED.labels(*labels).inc()
                else:
                    EVENTS_FAILED.labels(*labels).inc()
                    headers = pending.delivery.headers
                    name = f"{envelope.type} process"
                    with consumer_context(name, headers, envelope.correlation_id):
                        await self._retry_or_dead_letter(
                            pending.message, envelope, pending.attempt, outcome
                        )
            except Exception as exc:
                if not pending.settled.done():
                    pending.settled.set_exception(exc)
            else:
                if not pending.settled.done():
                    pending.settled.set_result(None)

    async def _retry_or_dead_letter(
        self, message: AbstractIncomingMessage, envelope: Envelope, attempt: int, exc: Exception
    ) -> None:
        if attempt >= self.max_attempts:
            log.error(
                "%s %s failed %d times, dead-lettered: %s",
                envelope.type,
                envelope.id,
                attempt,
                error_text(exc),
                exc_info=exc,
            )
            await self._dead_letter(message, envelope.type, attempt, error_text(exc))
            return
        retry_queue = self.retry_queue_names[attempt - 1]
        log.warning(
            "%s %s failed (attempt %d/%d), retrying in %dms: %s",
            envelope.type,
            envelope.id,
            attempt,
            self.max_attempts,
            self.retry_delays_ms[attempt - 1],
            error_text(exc),
            exc_info=exc,
        )
        await self._send_to_queue(message, retry_queue, **{ATTEMPT_HEADER: attempt + 1})
        await message.ack()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, event_type: str, attempt: int, error: str
    ) -> None:
        await self._send_to_queue(
            message, self.dlq_name, **{ATTEMPT_HEADER: attempt, ERROR_HEADER: error}
        )
        await message.ack()
        EVENTS_DEAD_LETTERED.labels(self.service, event_type).inc()

    # --- health -------------------------------------------------------------------------------

    def is_consuming(self) -> bool:
        """Connected, and (once started) the consumer's channel is open."""
        if not self._connected() or self._consumer_tag is None:
            return False
        return self._consume_channel is not None and not self._consume_channel.is_closed

    async def check_ready(self) -> None:
        """Readiness: raises unless connected and, for a consuming bus, actively consuming.

        Also refreshes the `krika_dlq_messages` gauge.
        """
        if not self._connected():
            raise BrokerUnavailable("not connected to the broker")
        if not self._subscribed_types():
            return  # publish-only
        if not self.is_consuming() or self._consume_channel is None:
            raise BrokerUnavailable(f"not consuming {self.queue_name}")
        underlay = cast(aiormq.Channel, await self._consume_channel.get_underlay_channel())
        if self._consumer_tag not in underlay.consumers:
            raise BrokerUnavailable(f"consumer of {self.queue_name} is not active")
        await self.dlq_depth()

    async def dlq_depth(self) -> int:
        """Messages waiting in this service's DLQ (also sets the `krika_dlq_messages` gauge)."""
        if self._dlq is None:
            raise RuntimeError("start() first")
        declared = await self._dlq.declare()
        depth = int(declared.message_count or 0)
        DLQ_MESSAGES.labels(self.service, self.dlq_name).set(depth)
        return depth

    async def close(self) -> None:
        """Stop consuming, let in-flight handlers finish (bounded), close the connection."""
        if self._connection is None or self._closing:
            return
        self._closing = True
        tag, self._consumer_tag = self._consumer_tag, None
        # While disconnected a robust channel would wait for the reconnect: skip the cancel.
        if self._queue is not None and tag is not None and self._connected():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(tag), 2.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.shutdown_timeout)
        if self._batch_worker is not None:
            self._batch_worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batch_worker
            # Still queued after the grace period: left unacknowledged, so the broker
            # redelivers them once the connection closes.
            while not self._batch_queue.empty():
                pending = self._batch_queue.get_nowait()
                if not pending.settled.done():
                    pending.settled.set_exception(BrokerUnavailable("bus closed"))
        with contextlib.suppress(Exception):
            await self._connection.close()
