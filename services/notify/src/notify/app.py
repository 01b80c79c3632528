"""notify: transactional e-mail and in-app notifications, with preferences.

Owns: in-app notifications, preferences per user and kind, the e-mail delivery queue (sent by
`notify.worker` over SMTP), chat digests, and read models of users (identity's events: addresses
and names) and orders (orders' events: titles and parties).
Events out (through the outbox, published by `notify.worker`): notify.notification_created.
Events in (notify.worker, through the inbox): see notify.consumers.

Run with `python -m notify` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from krika_common.auth import KeySource
from krika_common.telemetry import configure_logging
from krika_common.web import install_http, service_resources
from notify.config import Settings
from notify.endpoints import notifications
from notify.render import Templates
from notify.service import Notify


def create_app(settings: Settings | None = None, *, keys: KeySource | None = None) -> FastAPI:
    """`keys`: verify tokens with these instead of identity's JWKS (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_resources(app, settings, keys=keys):
            app.state.notify = Notify(settings, Templates())
            yield

    app = FastAPI(
        title="Krika notifications",
        version="1.0.0",
        summary="In-app notifications, preferences, and the e-mail delivery queue",
        lifespan=lifespan,
    )
    app.include_router(notifications)
    install_http(app, settings)
    return app
