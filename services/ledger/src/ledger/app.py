"""ledger: the double-entry book of every kobo (wallets, escrow, commission, withdrawals).

Owns: accounts (guarded ones with running balances), journal entries and postings (append-only:
the service's role may not UPDATE or DELETE them, and a trigger refuses it to anyone),
withdrawals, parked events, idempotency keys of withdrawals, and read models of orders, of
providers' KYC and payout accounts.
Events out (through the outbox, published by `ledger.worker`): ledger.withdrawal_requested.
Events in (ledger.worker, through the inbox): see ledger.consumers.

Run with `python -m ledger` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from krika_common.auth import KeySource
from krika_common.telemetry import configure_logging
from krika_common.web import install_http, service_resources
from ledger.config import Settings
from ledger.endpoints import ledger, wallet
from ledger.flows import Ledger
from ledger.journal import Journal


def create_app(settings: Settings | None = None, *, keys: KeySource | None = None) -> FastAPI:
    """`keys`: verify tokens with these instead of identity's JWKS (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_resources(app, settings, keys=keys):
            app.state.ledger = Ledger(settings, Journal())
            yield

    app = FastAPI(
        title="Krika ledger",
        version="1.0.0",
        summary="Wallets and the double-entry ledger: escrow, commission, withdrawals",
        lifespan=lifespan,
    )
    app.include_router(wallet)
    app.include_router(ledger)
    install_http(app, settings)
    return app
