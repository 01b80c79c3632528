"""gateway: the one entry point of the Krika API (`/api/v1/*` and `/ws`).

Owns: routing to the services (ARCHITECTURE §3), the JWT check before forwarding (public
routes are an exact list), the identity headers the services receive (`X-User-Id`,
`X-User-Roles`), per-user and per-IP rate limits in Redis, the WebSocket proxy to chat and
the merged API docs at `/api/docs` (Swagger UI served from the gateway itself). No database.
Events in: identity.user_suspended (refuses the user's current tokens; gateway.events).
Events out: none.

The proxy itself is a plain ASGI middleware (`gateway.proxy`); FastAPI serves only the
gateway's own routes: /healthz, /readyz, /metrics, /api/docs (and its assets under
/api/docs/assets/), /api/openapi.json.

Run with `uvicorn gateway.app:create_app --factory --port 8000 --no-proxy-headers` (or
`python -m gateway`): uvicorn's own X-Forwarded-For handling would otherwise believe any
loopback peer; the gateway applies its `trusted_proxies` setting itself.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.config import Settings
from gateway.docs import ApiDocs, swagger_assets
from gateway.events import run_bus, subscribe_suspensions
from gateway.proxy import Gateway, GatewayMiddleware
from krika_common.errors import install_error_handlers
from krika_common.events import EventBus
from krika_common.telemetry import configure_logging, install_operations, setup_tracing

log = logging.getLogger("gateway")


async def _refresh_jwks(gateway: Gateway, interval: float) -> None:
    """Re-read the JWKS now and then, so a key identity withdrew stops being trusted."""
    while True:
        await asyncio.sleep(interval)
        try:
            await gateway.jwks.refresh()
        except Exception as exc:  # keep the last good keys; /readyz still answers
            log.warning("JWKS refresh failed: %s: %s", type(exc).__name__, exc)


def _tune_gc() -> None:
    """Keep the cyclic GC off the hot path (about +15% throughput in bench/gateway.py).

    Everything alive after startup (modules, the app, pools) is moved out of the collector's
    sight, and young collections run every 20k allocations instead of every 700: a proxied
    request allocates a few hundred short-lived objects, nearly all freed by refcounting.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(20_000, gen1, gen2)


def create_app(settings: Settings | None = None, event_bus: EventBus | None = None) -> FastAPI:
    """`event_bus`: consume on this bus instead of one built from the settings (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)
    gateway = Gateway(settings)
    docs = ApiDocs(gateway)
    assets = swagger_assets()
    assets_url = f"/api/docs/assets/{assets.version}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.open()

        async def redis() -> None:
            await gateway.redis.ping()

        async def jwks() -> None:
            if gateway.jwks_fetches == 0:
                await gateway.jwks.refresh()

        app.state.readiness.update(redis=redis, jwks=jwks)
        tasks = [asyncio.create_task(_refresh_jwks(gateway, settings.jwks_refresh_interval))]
        bus = event_bus
        if bus is None and settings.consume_events:
            bus = EventBus(settings.amqp_url, service=settings.service_name)
        if bus is not None:
            subscribe_suspensions(bus, gateway.redis, settings.access_token_max_ttl)
            tasks.append(asyncio.create_task(run_bus(bus)))
        if settings.tune_gc:
            _tune_gc()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if bus is not None:
                await bus.close()
            await gateway.aclose()

    app = FastAPI(
        title="Krika gateway",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    # Added before the operations middleware so request ids and metrics wrap the proxy too.
    app.add_middleware(GatewayMiddleware, gateway=gateway)
    install_operations(app, settings.service_name)
    access = logging.getLogger(f"{settings.service_name}.access")
    access.setLevel(logging.NOTSET if settings.access_log else logging.WARNING)
    setup_tracing(settings.service_name, app)

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        """The merged OpenAPI document of every running service."""
        spec: dict[str, Any] = await docs.spec()
        return JSONResponse(spec)

    @app.get("/api/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI over the merged API, every asset from this gateway (no CDN)."""
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="Krika API",
            swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{assets_url}/favicon.png",
            # No spec validator badge (it would send the spec's URL to validator.swagger.io).
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/api/docs/assets/{version}/{name}", include_in_schema=False)
    async def swagger_ui_asset(version: str, name: str) -> Response:
        """Swagger UI's files; the URL names their content, so they never change."""
        found = assets.files.get(name)
        if version != assets.version or found is None:
            raise HTTPException(status_code=404)
        content, media_type = found
        return Response(
            content,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return app
