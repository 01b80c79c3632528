"""catalog: categories, services (gigs) with packages and media, search, reviews.

Owns: the category tree; services with their packages, gallery media (object storage, links
signed at answer time), FAQ and lifecycle (draft → published ⇄ paused → archived); full-text
search (tsvector + unaccent + pg_trgm); reviews and the rating they add up to; a read model of
providers (KYC status, suspension) and of completed orders, fed by events. Redis caches the
public category tree and service pages (catalog.cache).
Events out (through the outbox, published by `catalog.worker`): catalog.service_published,
catalog.service_updated, catalog.service_archived, catalog.review_posted.
Events in (catalog.worker, through the inbox): identity.kyc_submitted / kyc_approved /
kyc_rejected, identity.user_suspended / user_reinstated / user_roles_changed,
orders.order_completed.

Run with `python -m catalog` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from catalog.cache import PageCache
from catalog.config import Settings
from catalog.endpoints import categories, discovery, reviews, services
from catalog.service import Catalog
from krika_common.auth import KeySource
from krika_common.db import make_sessionmaker
from krika_common.storage import Storage
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http, service_resources

# The public path of the file route through the gateway (local store's signed links).
LINK_BASE = "/api/v1/catalog/files"


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
        # Search and public lists are one statement each: autocommit, no ping (catalog.cache).
        read_engine = create_async_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_pre_ping=False,
            isolation_level="AUTOCOMMIT",
            hide_parameters=True,
        )
        setup_tracing(settings.service_name, None, read_engine)
        try:
            async with service_resources(
                app, settings, keys=keys, redis_socket_timeout=settings.cache_timeout * 4
            ) as resources:
                app.state.read_sessionmaker = make_sessionmaker(read_engine)
                app.state.catalog = Catalog(
                    settings=settings,
                    storage=storage or Storage.from_settings(settings, link_base=LINK_BASE),
                    cache=PageCache(resources.redis, timeout=settings.cache_timeout),
                )
                yield
        finally:
            await read_engine.dispose()

    app = FastAPI(
        title="Krika catalog",
        version="1.0.0",
        summary="Categories, services, search, reviews",
        lifespan=lifespan,
    )
    app.include_router(categories)
    app.include_router(services)
    app.include_router(reviews)
    app.include_router(discovery)
    install_http(app, settings, body_limit=lambda scope: settings.body_limit_for(scope["path"]))
    return app
