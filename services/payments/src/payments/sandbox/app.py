"""The Paystack sandbox: a local server that answers like Paystack's API
(https://api.paystack.co) closely enough that Paystack client libraries cannot tell, with a
checkout page and signed webhooks, so payments runs offline in development and tests.

It owns its own database (SQLite by default, or PostgreSQL): transactions, customers,
transfer recipients, transfers, refunds, the balance, test rules and webhook deliveries.
Events out: Paystack's webhooks (charge.success, transfer.success/failed/reversed,
refund.pending/processed/failed) POSTed to the configured webhook URL. Nothing in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from . import api, checkout, controls
from .background import Background
from .config import SandboxSettings
from .errors import PaystackError
from .faults import FaultInjection, StripTrailingSlash
from .store import Store


async def _paystack_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaystackError)
    return JSONResponse(exc.body(), exc.status_code)


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    settings = settings or SandboxSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.database_url)
        await store.open(settings.balance)
        background = Background(settings, store)
        app.state.store = store
        app.state.background = background
        task = asyncio.create_task(background.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await background.close()
            await store.close()

    app = FastAPI(
        title="Paystack sandbox",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.add_exception_handler(PaystackError, _paystack_error)
    app.include_router(api.router)
    app.include_router(checkout.router)
    app.include_router(controls.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(FaultInjection)
    app.add_middleware(StripTrailingSlash)  # outermost: faults match the stripped path
    return app
