"""orders: the order lifecycle (state machine, history), deliveries with their files, timers.

Owns: orders with the catalog snapshot they were placed from (title, package, price, delivery
days, revisions), their history, deliveries and attachments (object storage, links signed at
answer time), durable timers (unpaid expiry, auto-completion; fired by `orders.worker`), a read
model of catalog's services (fed by events), and idempotency keys of placements.
Events out (through the outbox, published by `orders.worker`): orders.order_placed,
orders.order_status_changed, orders.order_completed, orders.order_cancelled.
Events in (orders.worker, through the inbox): payments.payment_succeeded / payment_failed /
refund_succeeded, catalog.service_published / service_updated / service_archived.

Run with `python -m orders` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from krika_common.access import AccessMarks, connect_redis
from krika_common.auth import JWKSClient, KeySource, TokenVerifier
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.storage import Storage
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http
from orders.config import Settings
from orders.endpoints import orders
from orders.service import Orders

# The public path of the file route through the gateway (local store's signed links).
LINK_BASE = "/api/v1/orders/files"


def create_app(
    settings: Settings | None = None,
    *,
    keys: KeySource | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """`keys`: verify tokens with these instead of identity's JWKS (tests); `storage`: use this
    store instead of the settings' one (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import httpx

        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        redis: Redis = connect_redis(settings)
        http = httpx.AsyncClient()
        setup_tracing(settings.service_name, app, engine)
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.token_verifier = TokenVerifier(
            keys or JWKSClient(settings.jwks_url, http),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        app.state.access_marks = AccessMarks(redis, settings.access_token_max_ttl)
        app.state.orders = Orders(
            settings=settings,
            storage=storage or Storage.from_settings(settings, link_base=LINK_BASE),
        )

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
        title="Krika orders",
        version="1.0.0",
        summary="Orders: placement, lifecycle, deliveries, history",
        lifespan=lifespan,
    )
    app.include_router(orders)
    install_http(app, settings, body_limit=lambda scope: settings.body_limit_for(scope["path"]))
    return app
