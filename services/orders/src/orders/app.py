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

from krika_common.auth import KeySource
from krika_common.storage import Storage
from krika_common.telemetry import configure_logging
from krika_common.web import install_http, service_resources
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
        async with service_resources(app, settings, keys=keys):
            app.state.orders = Orders(
                settings=settings,
                storage=storage or Storage.from_settings(settings, link_base=LINK_BASE),
            )
            yield

    app = FastAPI(
        title="Krika orders",
        version="1.0.0",
        summary="Orders: placement, lifecycle, deliveries, history",
        lifespan=lifespan,
    )
    app.include_router(orders)
    install_http(app, settings, body_limit=lambda scope: settings.body_limit_for(scope["path"]))
    return app
