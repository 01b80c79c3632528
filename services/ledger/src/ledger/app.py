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

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from krika_common.access import AccessMarks, connect_redis
from krika_common.auth import JWKSClient, KeySource, TokenVerifier
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http
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
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        redis: Redis = connect_redis(settings)
        http = httpx.AsyncClient(timeout=5.0)
        setup_tracing(settings.service_name, app, engine)
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.token_verifier = TokenVerifier(
            keys or JWKSClient(settings.jwks_url, http),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        app.state.access_marks = AccessMarks(redis, settings.access_token_max_ttl)
        app.state.ledger = Ledger(settings, Journal())

        async def cache() -> None:
            await redis.ping()

        app.state.readiness.update(database=database_check(engine), redis=cache)
        try:
            yield
        finally:
            await http.aclose()
            await redis.aclose()
            await engine.dispose()

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
