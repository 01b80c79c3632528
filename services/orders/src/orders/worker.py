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
import logging
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import EventBus
from krika_common.events.bus import error_text
from krika_common.server import serve
from krika_common.worker import worker_app
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
    config = settings
    return worker_app(
        settings,
        inbox=lambda _redis: inbox_handlers(config),
        access_marks=True,
        loops=lambda sessionmaker: [run_timers(sessionmaker, config)],
        idempotency_keys=True,
        make_bus=make_bus,
    )


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
