"""`python -m catalog.worker`: publishes catalog's outbox, consumes the events catalog keeps read
models of (catalog.consumers, through the inbox, queue `catalog.events`), records access marks
(krika_common.access, queue `catalog.access`: a separate queue, so a Redis outage delays marks
without holding back the read models) and prunes old outbox/inbox rows.

It serves /healthz, /readyz (database, both consumers) and /metrics on CATALOG_WORKER_PORT.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from catalog.cache import PageCache
from catalog.config import Settings
from catalog.consumers import inbox_handlers
from krika_common.events import EventBus
from krika_common.server import serve
from krika_common.worker import worker_app


def create_worker_app(
    settings: Settings | None = None, *, make_bus: Callable[[str], EventBus] | None = None
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    settings = settings or Settings()
    timeout = settings.cache_timeout
    return worker_app(
        settings,
        inbox=lambda redis: inbox_handlers(PageCache(redis, timeout=timeout)),
        access_marks=True,
        make_bus=make_bus,
    )


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
