"""payments: everything that talks to Paystack.

Owns: payables (orders' price snapshots, from orders' events), payments under our references
(stored before Paystack is called), the raw webhooks Paystack sent, refunds (one per payment),
payout accounts (Paystack transfer recipients), payouts (ledger's withdrawals as transfers), a
read model of payers' e-mail addresses, and idempotency keys of checkouts.
Events out (through the outbox, published by `payments.worker`): payments.payment_succeeded /
payment_failed, refund_succeeded / refund_failed, payout_succeeded / payout_failed,
payout_account_added / payout_account_removed.
Events in (payments.worker, through the inbox): identity.user_registered,
orders.order_placed, orders.order_cancelled, ledger.withdrawal_requested.

The Paystack sandbox (`payments.sandbox`) is a separate app: `make up` runs it beside this
service and points PAYMENTS_PAYSTACK_BASE_URL at it.

Run with `python -m payments` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from krika_common.auth import KeySource
from krika_common.telemetry import configure_logging
from krika_common.web import install_http, service_resources
from payments.config import Settings
from payments.endpoints import payments
from payments.payouts import Banks
from payments.paystack import Paystack
from payments.service import Payments


def paystack_client(settings: Settings) -> Paystack:
    return Paystack(
        settings.paystack_base_url,
        settings.paystack_secret_key,
        connect_timeout=settings.paystack_connect_timeout,
        timeout=settings.paystack_timeout,
    )


def create_app(settings: Settings | None = None, *, keys: KeySource | None = None) -> FastAPI:
    """`keys`: verify tokens with these instead of identity's JWKS (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_resources(app, settings, keys=keys):
            paystack = paystack_client(settings)
            app.state.payments = Payments(settings, paystack, app.state.sessionmaker)
            app.state.banks = Banks(app.state.payments)
            try:
                yield
            finally:
                await paystack.aclose()

    app = FastAPI(
        title="Krika payments",
        version="1.0.0",
        summary="Payments: Paystack checkout and webhooks, refunds, payout accounts",
        lifespan=lifespan,
    )
    app.include_router(payments)
    install_http(app, settings, body_limit=lambda scope: settings.body_limit_for(scope["path"]))
    return app
