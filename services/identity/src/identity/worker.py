"""`python -m identity.worker`: publishes identity's outbox to RabbitMQ and prunes old rows.

It serves /healthz, /readyz (database and broker) and /metrics (outbox lag) on
IDENTITY_WORKER_PORT so Swarm and Prometheus can watch it like any service. Retention
(krika_common.events.retention) deletes published outbox rows after
IDENTITY_OUTBOX_RETENTION_DAYS and inbox rows after IDENTITY_INBOX_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from identity.config import Settings
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.events import EventBus, OutboxRelay, run_retention
from krika_common.server import serve
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http


def create_worker_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(f"{settings.service_name}-worker", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=2)
        setup_tracing(f"{settings.service_name}-worker", None, engine)
        bus = EventBus.from_settings(settings)
        sessionmaker = make_sessionmaker(engine)
        relay = OutboxRelay(sessionmaker, bus, service=settings.service_name)
        # Connecting retries while the broker is down; the relay starts once it answers.
        connect = asyncio.create_task(bus.connect())

        async def run() -> None:
            await connect
            await relay.run()

        tasks = [
            asyncio.create_task(run()),
            asyncio.create_task(
                run_retention(
                    sessionmaker,
                    outbox_days=settings.outbox_retention_days,
                    inbox_days=settings.inbox_retention_days,
                )
            ),
        ]

        app.state.readiness.update(database=database_check(engine), broker=bus.check_ready)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await bus.close()
            await engine.dispose()

    app = FastAPI(title="Krika identity worker", lifespan=lifespan, openapi_url=None)
    install_http(app, settings, service=f"{settings.service_name}-worker")
    return app


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
