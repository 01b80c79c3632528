"""The HTTP edge every Krika app shares, installed by one call: `install_http(app, settings)`.

- errors rendered as `{"error", "detail"}` (krika_common.errors), an unhandled one as a JSON 500;
- /healthz, /readyz, /metrics, request ids, RED metrics and the access log (telemetry), with
  the request id and trace believed only from the gateway (krika_common.edge);
- request bodies over the route's limit answered 413 (krika_common.server);
- no redirect to the slash-less path: it would carry the service's internal address;
- an OpenAPI document that tells every answer an operation can give: the errors its endpoint
  declares (`responses=`), those of its dependencies (`@raises`), 422 where it takes input,
  413 where it takes a body and 503 `overloaded` everywhere, each body with its literal code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Scope

from krika_common.access import AccessMarks, connect_redis
from krika_common.auth import JWKSClient, KeySource, TokenVerifier
from krika_common.config import KrikaSettings
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.edge import edge_check
from krika_common.errors import (
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    ValidationFailed,
    errors_in,
    install_error_handlers,
    responses,
)
from krika_common.server import BodyLimitMiddleware
from krika_common.telemetry import (
    OPERATIONS_ROUTES,
    TrustCheck,
    install_operations,
    setup_tracing,
)


def install_http(
    app: FastAPI,
    settings: KrikaSettings,
    *,
    service: str | None = None,
    trusted: TrustCheck | None = None,
    body_limit: Callable[[Scope], int] | None = None,
    operations: Collection[str] = OPERATIONS_ROUTES,
) -> None:
    """Call once, after the routers are included.

    `trusted`: which hops may send request ids and traces (default: the gateway's secret);
    `body_limit`: bytes allowed for a request (default: `settings.http` by path prefix).
    """
    install_error_handlers(app)
    limits = settings.http
    app.add_middleware(
        BodyLimitMiddleware,
        limit_for=body_limit or (lambda scope: limits.body_limit(scope["path"])),
    )
    # Added last, so outermost: request ids, metrics and the JSON 500 wrap everything.
    install_operations(
        app,
        service or settings.service_name,
        trusted or edge_check(settings.edge_secret),
        operations,
    )
    app.router.redirect_slashes = False
    document_errors(app)


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _dependency_calls(sub)


def route_errors(route: APIRoute | RouteContext) -> list[type[ServiceError]]:
    """Every error `route` can answer with, as far as its declarations tell."""
    found: list[type[ServiceError]] = []
    for doc in route.responses.values():
        found += errors_in(doc)
    for call in _dependency_calls(route.dependant):
        found += getattr(call, "__krika_raises__", ())
    if get_flat_params(route.dependant) or route.body_field is not None:
        found.append(ValidationFailed)
    if route.body_field is not None:
        found.append(PayloadTooLarge)
    found.append(Overloaded)
    return found


def _error_entries(
    errors: list[type[ServiceError]], schemas: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """OpenAPI response objects for `errors`, per status; their schemas added to `schemas`."""
    entries: dict[str, dict[str, Any]] = {}
    for status, doc in responses(*errors).items():
        refs = []
        for error in errors_in(doc):
            model = error.body_model()
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
        entries[str(status)] = {
            "description": doc["description"],
            "content": {
                "application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}
            },
        }
    return entries


def document_errors(app: FastAPI) -> None:
    """Have `app.openapi()` document every route's error answers (computed once, lazily)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            # Route contexts: routes of included routers with their prefix and responses merged.
            for route in iter_route_contexts(app.routes):
                if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                    continue
                entries = _error_entries(route_errors(route), schemas)
                for method in route.methods or ():
                    operation = spec["paths"][route.path_format][method.lower()]
                    operation["responses"] = dict(
                        sorted({**operation["responses"], **entries}.items())
                    )
            # FastAPI's own 422 bodies, which ours replaced (the first refers to the second).
            for unused in ("HTTPValidationError", "ValidationError"):
                if f"#/components/schemas/{unused}" not in json.dumps(spec):
                    schemas.pop(unused, None)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class Resources:
    engine: AsyncEngine
    redis: Redis


@asynccontextmanager
async def caller_resources(
    app: FastAPI,
    settings: KrikaSettings,
    *,
    keys: KeySource | None = None,
    redis_socket_timeout: float | None = None,
) -> AsyncIterator[Redis]:
    """Who the caller is: Redis (`connect_redis`), the token verifier on identity's JWKS
    (`keys` instead in tests), the access marks and Redis' readiness check; closed after.
    For a service without PostgreSQL (chat); the others use `service_resources`."""
    redis = connect_redis(settings, socket_timeout=redis_socket_timeout)
    http = httpx.AsyncClient(timeout=5.0)
    app.state.token_verifier = TokenVerifier(
        keys or JWKSClient(settings.jwks_url, http),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    app.state.access_marks = AccessMarks(redis, settings.access_token_max_ttl)

    async def ping() -> None:
        await redis.ping()

    app.state.readiness["redis"] = ping
    try:
        yield redis
    finally:
        await http.aclose()
        await redis.aclose()


@asynccontextmanager
async def service_resources(
    app: FastAPI,
    settings: KrikaSettings,
    *,
    keys: KeySource | None = None,
    redis_socket_timeout: float | None = None,
) -> AsyncIterator[Resources]:
    """What the lifespan of every API service but identity and chat opens, and closes after
    it: the database engine (`state.sessionmaker`, traced) and its readiness check, then
    `caller_resources`. The service adds its own state inside:

        async with service_resources(app, settings, keys=keys):
            app.state.orders = Orders(...)
            yield
    """
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    setup_tracing(settings.service_name, app, engine)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.readiness["database"] = database_check(engine)
    try:
        async with caller_resources(
            app, settings, keys=keys, redis_socket_timeout=redis_socket_timeout
        ) as redis:
            yield Resources(engine, redis)
    finally:
        await engine.dispose()
