"""`python -m chat.worker`: chat's background work. It serves /healthz, /readyz and /metrics on
CHAT_WORKER_PORT and runs:

- the consumers (chat.consumers, queue `chat.events`): users, orders' conversations, and the
  pushes of order status changes and notifications to the users' open connections (a
  write-only Socket.IO manager on the hub's Redis channel);
- access marks (queue `chat.access`): a suspension or revocation is recorded in Redis and
  announced; every hub replica closes that user's connections;
- the message relay: each stored message carries its `chat.message_sent` until the broker
  confirmed it (the envelope id is the message id, so a re-publish is the same event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI
from prometheus_client import Counter, Gauge

from chat.app import open_mongo
from chat.config import Settings
from chat.consumers import Consumers
from chat.documents import Message, from_ms
from krika_common.access import AccessMarks, connect_redis
from krika_common.events import Envelope, EventBus, MessageSent
from krika_common.events.bus import error_text
from krika_common.server import serve
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http

log = logging.getLogger(__name__)

RELAY_FAILURES = Counter("krika_chat_relay_failures_total", "Message relay rounds that failed")
OLDEST_PENDING = Gauge(
    "krika_chat_message_events_oldest_pending_seconds",
    "Age of the oldest message whose chat.message_sent is unpublished",
)
PENDING = Gauge(
    "krika_chat_message_events_pending", "Messages whose chat.message_sent is unpublished"
)


async def relay_once(bus: EventBus, settings: Settings) -> int:
    """Publish the oldest pending `chat.message_sent` events; how many were published."""
    collection = Message.get_pymongo_collection()
    cursor = (
        collection.find(
            {"pending_event": {"$type": "object"}}, {"pending_event": 1, "created_ms": 1}
        )
        .sort([("created_ms", 1), ("_id", 1)])
        .limit(settings.relay_batch)
    )
    published = 0
    async for row in cursor:
        envelope = Envelope(
            id=uuid.UUID(row["_id"]),
            type=MessageSent.event_type,
            version=MessageSent.event_version,
            occurred_at=from_ms(row["created_ms"]),
            producer=settings.service_name,
            data=row["pending_event"],
        )
        await bus.publish(envelope)
        await collection.update_one({"_id": row["_id"]}, {"$unset": {"pending_event": ""}})
        published += 1
    return published


async def run_relay(bus: EventBus, settings: Settings) -> None:
    """Relay until cancelled: right away while there is a backlog, else every relay_interval.
    `bus` is connected. The backlog gauges are refreshed every round, whatever happened."""
    collection = Message.get_pymongo_collection()
    while True:
        published = 0
        try:
            published = await relay_once(bus, settings)
        except Exception as exc:
            RELAY_FAILURES.inc()
            log.warning("message relay failed: %s", error_text(exc))
        try:
            pending = {"pending_event": {"$type": "object"}}
            PENDING.set(await collection.count_documents(pending))
            oldest = await collection.find_one(pending, {"created_ms": 1}, sort=[("created_ms", 1)])
            age = time.time() - oldest["created_ms"] / 1000 if oldest else 0.0
            OLDEST_PENDING.set(max(0.0, age))
        except Exception as exc:
            log.warning("message relay backlog not measured: %s", error_text(exc))
        if published < settings.relay_batch:
            await asyncio.sleep(settings.relay_interval)


def create_worker_app(
    settings: Settings | None = None, *, make_bus: Callable[[str], EventBus] | None = None
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    settings = settings or Settings()
    name = f"{settings.service_name}-worker"
    configure_logging(name, settings.log_level)

    def bus_for(queue: str) -> EventBus:
        if make_bus is not None:
            return make_bus(queue)
        return EventBus.from_settings(settings, queue=queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_tracing(name)
        redis = connect_redis(settings)
        emitter = socketio.AsyncRedisManager(
            settings.redis_url, channel=settings.socketio_channel, write_only=True
        )
        bus = bus_for(f"{settings.service_name}.events")
        marks_bus = bus_for(f"{settings.service_name}.access")
        Consumers(redis, emitter, settings.push_dedupe_seconds).subscribe(bus)
        AccessMarks(redis, settings.access_token_max_ttl).subscribe(marks_bus)
        async with open_mongo(settings) as mongo:

            async def consume(one: EventBus) -> None:
                await one.connect()
                await one.start()
                if one is bus:
                    await run_relay(bus, settings)

            async def ping_mongo() -> None:
                await mongo.admin.command("ping")

            tasks = [
                asyncio.create_task(consume(bus)),
                asyncio.create_task(consume(marks_bus)),
            ]
            app.state.readiness.update(
                mongodb=ping_mongo, broker=bus.check_ready, access_marks=marks_bus.check_ready
            )
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await bus.close()
                await marks_bus.close()
                await redis.aclose()
                if emitter.redis is not None:
                    await emitter.redis.aclose()

    app = FastAPI(title=f"Krika {name}", lifespan=lifespan, openapi_url=None)
    install_http(app, settings, service=name)
    return app


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
