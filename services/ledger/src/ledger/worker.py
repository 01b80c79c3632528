"""`python -m ledger.worker`: publishes ledger's outbox (withdrawal requests), consumes the
events it books (ledger.consumers, through the inbox, queue `ledger.events`), records access
marks, retries parked events with backoff, and checks the invariants every
LEDGER_INVARIANTS_INTERVAL seconds (metric `krika_ledger_invariant_ok{check}`). It serves
/healthz, /readyz and /metrics on LEDGER_WORKER_PORT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import EventBus
from krika_common.events.bus import error_text
from krika_common.server import serve
from krika_common.worker import worker_app
from ledger import flows, service
from ledger.config import Settings
from ledger.consumers import inbox_handlers
from ledger.flows import Ledger
from ledger.journal import Journal

log = logging.getLogger(__name__)


async def run_upkeep(sessionmaker: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
    """Retry due parked events; check the invariants now and then. Until cancelled."""
    settings = ledger.settings
    checked = float("-inf")
    while True:
        try:
            async with sessionmaker() as session, session.begin():
                await flows.retry_parked(session, ledger, None)
            if time.monotonic() - checked >= settings.invariants_interval:
                async with sessionmaker() as session:
                    result = await service.invariants(session)
                checked = time.monotonic()
                if not result.ok:
                    log.error(
                        "ledger invariants broken: %s", [c for c in result.checks if not c.ok]
                    )
        except Exception as exc:
            log.warning("upkeep failed: %s", error_text(exc))
        await asyncio.sleep(settings.poll_interval)


def create_worker_app(
    settings: Settings | None = None, *, make_bus: Callable[[str], EventBus] | None = None
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    config = settings or Settings()
    ledger = Ledger(config, Journal())
    return worker_app(
        config,
        inbox=lambda _redis: inbox_handlers(ledger),
        access_marks=True,
        loops=lambda sessionmaker: [run_upkeep(sessionmaker, ledger)],
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
