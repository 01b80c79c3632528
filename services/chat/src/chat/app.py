"""chat: conversations and messages (MongoDB through Beanie) and the realtime Socket.IO hub.

Owns: conversations (one per order, open only to its customer and provider; direct ones between
two users; groups), messages with attachments (object storage, links signed for minutes),
read markers and unread counts, users it may add (from identity's events), presence (Redis).
Realtime: Socket.IO at /socket.io/ (chat.hub), fanned out across replicas by Redis.
Events out (published by `chat.worker` from the messages themselves): chat.message_sent.
Events in (chat.worker): identity.user_registered, orders.order_placed (the order's
conversation), orders.order_status_changed (pushed as `order_status`),
notify.notification_created (pushed as `notification`), identity.user_suspended /
user_reinstated / user_roles_changed (access marks: open connections are closed).

Run with `python -m chat` (krika_common.server: uvicorn with every limit explicit); the ASGI
app is `asgi(create_app())`: Socket.IO in front, the REST API behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from beanie import init_beanie
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from starlette.types import ASGIApp

from chat.config import Settings
from chat.documents import DOCUMENTS
from chat.endpoints import chat
from chat.hub import Hub
from chat.presence import Presence
from chat.service import Chat
from krika_common.auth import KeySource
from krika_common.storage import Storage
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import caller_resources, install_http

# The public path of the file route through the gateway (local store's signed links).
LINK_BASE = "/api/v1/chat/files"


def mongo_client(settings: Settings) -> AsyncMongoClient[dict[str, object]]:
    """pymongo's async client with explicit timeouts and pool size; UTC-aware times."""
    timeout_ms = int(settings.mongodb_timeout * 1000)
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        maxPoolSize=settings.mongodb_max_pool_size,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        waitQueueTimeoutMS=timeout_ms,
        appname=settings.service_name,
    )


@asynccontextmanager
async def open_mongo(settings: Settings) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    """The client, with Beanie initialised on chat's database (indexes created if missing)."""
    client = mongo_client(settings)
    try:
        await init_beanie(database=client[settings.mongodb_database], document_models=DOCUMENTS)
        yield client
    finally:
        await client.close()


def create_app(
    settings: Settings | None = None,
    *,
    keys: KeySource | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """`keys`: verify tokens with these instead of identity's JWKS (tests); `storage`: use this
    store instead of the one the settings name. The hub is `app.state.hub`."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)
    hub = Hub(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_tracing(settings.service_name, app)
        async with (
            open_mongo(settings) as mongo,
            caller_resources(app, settings, keys=keys) as redis,
        ):

            async def ping_mongo() -> None:
                await mongo.admin.command("ping")

            app.state.readiness["mongodb"] = ping_mongo
            app.state.chat = Chat(
                settings,
                storage or Storage.from_settings(settings, link_base=LINK_BASE),
                Presence(redis, settings.presence_ttl),
            )
            await hub.start(app.state.chat, app.state.token_verifier, app.state.access_marks)
            try:
                yield
            finally:
                await hub.stop()

    app = FastAPI(
        title="Krika chat",
        version="1.0.0",
        summary="Conversations, messages and the realtime Socket.IO hub",
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.include_router(chat)
    install_http(app, settings, body_limit=lambda scope: settings.body_limit_for(scope["path"]))
    return app


def asgi(app: FastAPI) -> ASGIApp:
    """What the server runs: Socket.IO at /socket.io/, the REST API for everything else."""
    hub: Hub = app.state.hub
    return hub.asgi(app)  # type: ignore[no-any-return]
