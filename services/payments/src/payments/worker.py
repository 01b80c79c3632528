"""`python -m payments.worker`: publishes payments' outbox, consumes identity's, orders' and
ledger's events (payments.consumers, through the inbox, queue `payments.events`), records access
marks, and runs the follow-up loop:

- webhooks stored but not processed (the API process died, or Paystack could not confirm them
  then) are processed again, with backoff;
- payments pending past PAYMENTS_RECONCILE_AFTER are verified with Paystack (a webhook can be
  lost), at growing intervals, until paid, failed or given up as abandoned;
- refunds are sent, and followed up until Paystack settles them;
- payouts are sent as transfers, and those Paystack has not settled are verified.

Rows are claimed with FOR UPDATE SKIP LOCKED (and a lease), so any number of workers share the
work and each row is handled by one at a time. It serves /healthz, /readyz and /metrics on
PAYMENTS_WORKER_PORT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import EventBus
from krika_common.events.bus import error_text
from krika_common.server import serve
from krika_common.worker import worker_app
from payments import payouts, service
from payments.app import paystack_client
from payments.config import Settings
from payments.consumers import inbox_handlers
from payments.service import Payments

log = logging.getLogger(__name__)


async def follow_up_once(deps: Payments) -> int:
    """One round of every kind of follow-up; how many rows it handled."""
    limit = deps.settings.batch
    jobs: list[tuple[str, Callable[..., Awaitable[int]]]] = [
        ("webhooks", service.process_due_webhooks),
        ("payments", service.reconcile_payments),
        ("refunds", service.submit_refunds),
        ("payouts", payouts.submit_payouts),
    ]
    handled = 0
    for name, job in jobs:
        try:
            handled += await job(deps, limit=limit)
        except Exception as exc:
            log.warning("follow-up of %s failed: %s", name, error_text(exc))
    return handled


async def run_follow_ups(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Follow-up rounds until cancelled: at once while there is work, then a pause."""
    paystack = paystack_client(settings)
    deps = Payments(settings, paystack, sessionmaker)
    try:
        while True:
            if await follow_up_once(deps) == 0:
                await asyncio.sleep(settings.poll_interval)
    finally:
        await paystack.aclose()


def create_worker_app(
    settings: Settings | None = None, *, make_bus: Callable[[str], EventBus] | None = None
) -> FastAPI:
    """`make_bus(queue)`: build the buses another way (tests: short-lived queues)."""
    config = settings or Settings()
    return worker_app(
        config,
        inbox=lambda _redis: inbox_handlers(),
        access_marks=True,
        loops=lambda sessionmaker: [run_follow_ups(sessionmaker, config)],
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
