"""A service's worker process (`python -m <service>.worker`), built the same way for every service.

    def create_worker_app(settings=None, *, make_bus=None) -> FastAPI:
        settings = settings or Settings()
        return worker_app(
            settings,
            inbox=lambda redis: inbox_handlers(...),    # its consumers (queue <svc>.events)
            access_marks=True,                          # queue <svc>.access
            loops=lambda sessionmaker: [run_timers(sessionmaker, settings)],
            idempotency_keys=True,
            make_bus=make_bus,
        )

What every worker runs: the outbox relay (krika_common.events.outbox), retention of published
outbox rows and handled inbox rows (and expired idempotency keys with `idempotency_keys`),
and /healthz, /readyz and /metrics on its own port. Optionally: the service's inbox consumers
on `<service>.events`, access marks (krika_common.access) on `<service>.access` - a queue of
their own, so a Redis outage delays marks without holding back the read models - and loops of
its own (timers). /readyz covers the database and each bus.

Connecting retries while the broker is down; consuming and relaying follow. On shutdown every
task is cancelled and awaited (the relay marks what the broker confirmed), then the buses,
Redis and the engine are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.access import AccessMarks, connect_redis
from krika_common.config import KrikaSettings
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.events import EventBus, InboxHandlers, OutboxRelay, run_retention
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http

Sessionmaker = async_sessionmaker[AsyncSession]


def worker_app(
    settings: KrikaSettings,
    *,
    inbox: Callable[[Redis], InboxHandlers] | None = None,
    access_marks: bool = False,
    loops: Callable[[Sessionmaker], list[Coroutine[Any, Any, None]]] | None = None,
    idempotency_keys: bool = False,
    make_bus: Callable[[str], EventBus] | None = None,
    pool_size: int = 4,
) -> FastAPI:
    """The worker's app (its lifespan runs everything). `make_bus(queue)` builds a bus
    another way (tests: short-lived queues); by default `EventBus.from_settings`."""
    name = f"{settings.service_name}-worker"
    configure_logging(name, settings.log_level)

    def default_bus(queue: str) -> EventBus:
        return EventBus.from_settings(settings, queue=queue)

    bus_for = make_bus or default_bus

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=pool_size)
        setup_tracing(name, None, engine)
        redis: Redis = connect_redis(settings)
        sessionmaker = make_sessionmaker(engine)
        bus = bus_for(f"{settings.service_name}.events")
        relay = OutboxRelay(sessionmaker, bus, service=settings.service_name)
        if inbox is not None:
            inbox(redis).subscribe(bus, sessionmaker)
        buses = [bus]
        if access_marks:
            marks_bus = bus_for(f"{settings.service_name}.access")
            AccessMarks(redis, settings.access_token_max_ttl).subscribe(marks_bus)
            buses.append(marks_bus)

        async def consume(one: EventBus) -> None:
            await one.connect()
            if one is not bus or inbox is not None:  # a bus without subscriptions only publishes
                await one.start()
            if one is bus:
                await relay.run()

        tasks = [asyncio.create_task(consume(one)) for one in buses]
        tasks.append(
            asyncio.create_task(
                run_retention(
                    sessionmaker,
                    outbox_days=settings.outbox_retention_days,
                    inbox_days=settings.inbox_retention_days,
                    idempotency_keys=idempotency_keys,
                )
            )
        )
        tasks += [asyncio.create_task(loop) for loop in (loops(sessionmaker) if loops else [])]
        app.state.readiness.update(database=database_check(engine), broker=bus.check_ready)
        if access_marks:
            app.state.readiness["access_marks"] = buses[1].check_ready
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for one in buses:
                await one.close()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(title=f"Krika {name}", lifespan=lifespan, openapi_url=None)
    install_http(app, settings, service=name)
    return app
