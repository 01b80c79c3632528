"""`python -m orders.worker`: publishes orders' outbox, consumes payments' and catalog's events
(orders.consumers, through the inbox, queue `orders.events`), records access marks
(krika_common.access, queue `orders.access`), fires due timers (unpaid expiry, auto-completion)
and prunes old outbox/inbox rows and expired idempotency keys.

Timers are rows (orders.timer / timer_due_at) claimed with FOR UPDATE SKIP LOCKED: any number
of workers share them, each due timer fires once, and one due while no worker ran fires at the
next start. It serves /healthz, /readyz (database, both consumers) and /metrics on
ORDERS_WORKER_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.access import AccessMarks
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.events import EventBus, OutboxRelay, run_retention
from krika_common.events.bus import error_text
from krika_common.server import serve
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http
from orders.config import Settings
from orders.consumers import inbox_handlers
from orders.service import fire_due_timers

log = logging.getLogger(__name__)


async def run_timers(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Fire due timers until cancelled: batch after batch while there are some, then a pause."""
    while True:
        try:
            fired = await fire_due_timers(sessionmaker, settings, limit=settings.timer_batch)
        except Exception as exc:
            log.warning("timers failed: %s", error_text(exc))
            fired = 0
        if fired < settings.timer_batch:
            await asyncio.sleep(settings.timer_poll_interval)


def create_worker_app(
    settings: Settings | None = None, *, make_bus: Callable[[str], EventBus] | None = None
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    settings = settings or Settings()
    if make_bus is None:

        def make_bus(queue: str) -> EventBus:
            return EventBus.from_settings(settings, queue=queue)

    configure_logging(f"{settings.service_name}-worker", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=4)
        setup_tracing(f"{settings.service_name}-worker", None, engine)
        redis: Redis = Redis.from_url(settings.redis_url)
        bus = make_bus(f"{settings.service_name}.events")
        marks_bus = make_bus(f"{settings.service_name}.access")
        sessionmaker = make_sessionmaker(engine)
        relay = OutboxRelay(sessionmaker, bus, service=settings.service_name)
        inbox_handlers(settings).subscribe(bus, sessionmaker)
        AccessMarks(redis, settings.access_token_max_ttl).subscribe(marks_bus)

        async def run() -> None:
            # Connecting retries while the broker is down; consuming and relaying follow.
            await bus.connect()
            await bus.start()
            await relay.run()

        async def run_marks() -> None:
            await marks_bus.connect()
            await marks_bus.start()

        tasks = [
            asyncio.create_task(run()),
            asyncio.create_task(run_marks()),
            asyncio.create_task(run_timers(sessionmaker, settings)),
            asyncio.create_task(
                run_retention(
                    sessionmaker,
                    outbox_days=settings.outbox_retention_days,
                    inbox_days=settings.inbox_retention_days,
                    idempotency_keys=True,
                )
            ),
        ]

        app.state.readiness.update(
            database=database_check(engine),
            broker=bus.check_ready,
            access_marks=marks_bus.check_ready,
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
            await engine.dispose()

    app = FastAPI(title="Krika orders worker", lifespan=lifespan, openapi_url=None)
    install_http(app, settings, service=f"{settings.service_name}-worker")
    return app


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
