"""gateway: the one entry point of the Krika API (`/api/v1/*` and `/socket.io/`).

Owns: routing to the services (ARCHITECTURE §3), the JWT check before forwarding (public
routes are an exact list), the identity headers the services receive (`X-User-Id`,
`X-User-Roles`), per-user and per-IP rate limits in Redis, the realtime (Socket.IO over
WebSocket) proxy to chat and the merged API docs at `/api/docs` (Swagger UI served from the
gateway itself). No database.
Events in: identity.user_suspended, identity.user_reinstated, identity.user_roles_changed
(access marks: refuse the tokens they outdate, close live sockets; gateway.events).
Events out: none.

The proxy itself is a plain ASGI middleware (`GatewayMiddleware` below, dispatching to
gateway.proxy and gateway.websocket); FastAPI serves only the gateway's own routes: /healthz,
/api/docs (and its assets under /api/docs/assets/), /api/openapi.json - and, on the internal
operations listener only (`ops_port`, never published), /readyz and /metrics.

Run with `python -m gateway`: one uvicorn server listening on `port` and `ops_port`, with the
limits of krika_common.server; the gateway judges X-Forwarded-For itself (`trusted_proxies`).
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
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import Settings
from gateway.core import Gateway
from gateway.docs import ApiDocs, swagger_assets
from gateway.events import run_bus
from gateway.proxy import handle_http
from gateway.routes import REALTIME_PATHS
from gateway.websocket import (
    LiveSockets,
    handle_websocket,
    refuse_handshake,
    refuse_polling,
    watch_access_marks,
)
from krika_common.access import AccessMarks
from krika_common.events import EventBus
from krika_common.server import send_error
from krika_common.telemetry import OPERATIONS_ROUTES, configure_logging, setup_tracing
from krika_common.web import install_http

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


_OPS_ONLY = frozenset(OPERATIONS_ROUTES) - {"/healthz"}


class GatewayMiddleware:
    """`/api/v1/*` (HTTP) and `/socket.io/` (WebSocket) are proxied; other HTTP is FastAPI's.

    The operations listener (`ops_port`) serves /healthz, /readyz and /metrics only, and the
    public one everything but /readyz and /metrics. The one WebSocket is the realtime path on
    the public listener; a WebSocket anywhere else, and HTTP at the realtime path (Engine.IO
    polling), are refused here (gateway.websocket).
    """

    def __init__(self, app: ASGIApp, gateway: Gateway, sockets: LiveSockets) -> None:
        self.app = app
        self.gateway = gateway
        self.sockets = sockets
        self.ops_port = gateway.settings.ops_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        server = scope.get("server")
        if server is not None and server[1] == self.ops_port:
            allowed = path in OPERATIONS_ROUTES
        else:
            allowed = path not in _OPS_ONLY
        if kind == "websocket":
            if allowed and path in REALTIME_PATHS:
                await handle_websocket(self.gateway, self.sockets, scope, receive, send)
            else:
                await refuse_handshake(receive, send)
        elif not allowed:
            await send_error(send, 404, "not_found", "Not found")
        elif path.startswith("/api/v1/"):
            await handle_http(self.gateway, scope, receive, send)
        elif path in REALTIME_PATHS:
            await refuse_polling(scope, send)
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, event_bus: EventBus | None = None) -> FastAPI:
    """`event_bus`: consume on this bus instead of one built from the settings (tests)."""
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)
    gateway = Gateway(settings)
    sockets = LiveSockets()
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
        tasks = [
            asyncio.create_task(_refresh_jwks(gateway, settings.jwks_refresh_interval)),
            asyncio.create_task(watch_access_marks(settings.redis_url, sockets)),
        ]
        bus = event_bus
        if bus is None and settings.consume_events:
            bus = EventBus.from_settings(settings)
        if bus is not None:
            AccessMarks(gateway.redis, settings.access_token_max_ttl).subscribe(bus)
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
    app.state.live_sockets = sockets
    # Added first, so innermost: request ids, metrics, body limits and errors wrap the proxy.
    app.add_middleware(GatewayMiddleware, gateway=gateway, sockets=sockets)
    install_http(
        app,
        settings,
        trusted=gateway.trusted.trusts,
        body_limit=settings.body_limit_for,
    )
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
