"""Merged API docs, readiness and the gateway's own routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from html.parser import HTMLParser
from importlib.resources import files
from typing import Any

import httpx

from gateway.docs import merge_specs
from gateway.routes import PublicRoutes

from .conftest import GatewayClient, StartGateway
from .upstreams import Upstreams


async def test_openapi_merges_the_running_services(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    paths = spec["paths"]
    assert "/api/v1/auth/login" in paths
    assert "/api/v1/users/me" in paths
    assert "/api/v1/catalog/services/{service_id}" in paths
    # Ops-only and unrouted paths of the services are not part of the public API.
    assert not [p for p in paths if not p.startswith("/api/v1/")]
    assert not [p for p in paths if "healthz" in p or "well-known" in p or "jwks" in p]

    schemas = spec["components"]["schemas"]
    # Identity and catalog each have a different "Item": both kept, prefixed...
    assert {"identity_Item", "catalog_Item"} <= set(schemas)
    assert "Item" not in schemas
    # ...and shared, identical ones (FastAPI's validation errors) stay single.
    assert "HTTPValidationError" in schemas
    assert "identity_HTTPValidationError" not in schemas
    me = paths["/api/v1/users/me"]["get"]
    ref = me["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/identity_Item"
    assert schemas["catalog_Item"]["properties"].keys() == {"title", "price"}

    # Public routes need no token in Swagger UI; the rest carry the bearer scheme.
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    assert "401" not in paths["/api/v1/auth/login"]["post"]["responses"]  # no token, no 401
    assert "429" in paths["/api/v1/auth/login"]["post"]["responses"]
    assert paths["/api/v1/catalog/services/{service_id}"]["get"]["security"] == []
    assert paths["/api/v1/catalog/services"]["post"]["security"] == [{"bearerAuth": []}]
    assert me["security"] == [{"bearerAuth": []}]
    assert spec["x-krika-services"]["notify"] == "unavailable"
    assert spec["x-krika-services"]["identity"] == "up"


def test_merge_renames_collisions_and_rewrites_refs() -> None:
    identity = {
        "paths": {
            "/users/me": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Item"}
                                }
                            }
                        }
                    }
                }
            }
        },
        "components": {"schemas": {"Item": {"properties": {"name": {"type": "string"}}}}},
    }
    catalog = {
        "paths": {
            "/catalog/items": {
                "get": {
                    "operationId": "list",
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Item"}
                                }
                            }
                        }
                    },
                }
            },
            "/healthz": {"get": {"operationId": "list"}},
        },
        "components": {"schemas": {"Item": {"properties": {"title": {"type": "string"}}}}},
    }
    orders = {"paths": {"/orders": {"get": {"operationId": "list"}}}}
    merged = merge_specs(
        {"identity": identity, "catalog": catalog, "orders": orders, "chat": None},
        PublicRoutes(),
    )
    schemas = merged["components"]["schemas"]
    assert {"identity_Item", "catalog_Item"} <= set(schemas)
    assert "Item" not in schemas

    def ref(path: str) -> str:
        op = merged["paths"][path]["get"]
        return str(op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])

    assert ref("/api/v1/users/me") == "#/components/schemas/identity_Item"
    assert ref("/api/v1/catalog/items") == "#/components/schemas/catalog_Item"
    assert merged["paths"]["/api/v1/catalog/items"]["get"]["operationId"] == "catalog_list"
    assert merged["paths"]["/api/v1/orders"]["get"]["operationId"] == "orders_list"
    assert "/api/v1/healthz" not in merged["paths"]

    def codes(path: str, method: str, status: str) -> set[str]:
        answer = merged["paths"][path][method]["responses"][status]
        schema = answer["content"]["application/json"]["schema"]
        refs = [s["$ref"].rsplit("/", 1)[1] for s in schema.get("anyOf", [schema])]
        return {schemas[r]["properties"]["error"]["const"] for r in refs}

    # The gateway's own answers, beside the services': every route, and token routes.
    assert codes("/api/v1/orders", "get", "429") == {"rate_limited"}
    assert codes("/api/v1/orders", "get", "502") == {"upstream_unavailable"}
    assert codes("/api/v1/orders", "get", "504") == {"upstream_timeout"}
    assert codes("/api/v1/orders", "get", "400") == {"bad_request", "ambiguous_credentials"}
    assert codes("/api/v1/orders", "get", "401") == {
        "unauthorized",
        "invalid_token",
        "token_expired",
        "token_revoked",
    }
    assert codes("/api/v1/orders", "get", "403") == {"account_suspended"}

    assert merged["x-krika-services"] == {
        "identity": "up",
        "catalog": "up",
        "orders": "up",
        "chat": "unavailable",
    }


async def test_swagger_ui_points_at_the_merged_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/api/openapi.json" in response.text


class _Links(HTMLParser):
    """Every `src` and `href` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]


async def test_swagger_ui_assets_come_from_the_gateway(start_gateway: StartGateway) -> None:
    async with start_gateway() as client:
        page = (await client.get("/api/docs")).text
        links = _Links()
        links.feed(page)
        # The script, the stylesheet and the favicon, all on this gateway: no CDN, no host.
        assert len(links.urls) == 3
        assert all(url.startswith("/api/docs/assets/") for url in links.urls), links.urls
        assert "http:" not in page.lower()
        assert "https:" not in page.lower()

        static = files("fastapi_offline") / "static"
        types = {"js": "text/javascript", "css": "text/css", "png": "image/png"}
        for url in links.urls:
            response = await client.get(url)
            assert response.status_code == 200, url
            name = url.rsplit("/", 1)[1]
            assert response.headers["content-type"].startswith(types[name.rsplit(".", 1)[1]])
            assert "immutable" in response.headers["cache-control"]
            assert response.content == (static / name).read_bytes()

        # Another version's URL, or a file that is not one of the assets: not found.
        version = links.urls[0].split("/")[4]
        for path in (f"/api/docs/assets/{version}0/swagger-ui.css", "/api/docs/assets/x"):
            assert (await client.get(path)).status_code == 404, path
        for name in ("redoc.standalone.js", "..%2Fconsts.py", "__init__.py"):
            path = f"/api/docs/assets/{version}/{name}"
            assert (await client.get(path)).status_code == 404, path


async def test_readyz_checks_redis_and_jwks(client: GatewayClient, upstreams: Upstreams) -> None:
    response = await client.get(f"{client.ops_url}/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok", "jwks": "ok"}
    assert upstreams.jwks_fetches == 1


async def test_readyz_fails_without_jwks(start_gateway: StartGateway) -> None:
    async with start_gateway(jwks_url="http://127.0.0.1:1/.well-known/jwks.json") as client:
        response = await client.get(f"{client.ops_url}/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["jwks"].startswith("failing")


async def test_gateway_routes_need_no_token(client: GatewayClient) -> None:
    for path in ("/healthz", "/api/docs", "/api/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    missing = await client.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_readiness_and_metrics_stay_on_the_operations_port(client: GatewayClient) -> None:
    for path in ("/readyz", "/metrics"):
        public = await client.get(path)
        assert public.status_code == 404, path
        assert public.json()["error"] == "not_found"
        assert (await client.get(f"{client.ops_url}{path}")).status_code == 200, path
    assert (await client.get(f"{client.ops_url}/healthz")).status_code == 200
    # The operations port serves nothing else: not the API, not the docs.
    for path in ("/api/docs", "/api/v1/orders", "/api/openapi.json"):
        assert (await client.get(f"{client.ops_url}{path}")).status_code == 404, path


async def test_access_log_can_be_switched_off(
    start_gateway: StartGateway, mint_token: Callable[..., str]
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    try:
        headers = {"Authorization": f"Bearer {mint_token()}"}
        async with start_gateway(log_level="INFO") as client:
            await client.get("/api/v1/orders", headers=headers)
        assert [r.getMessage() for r in records] == ["GET /api/v1/orders/* 200"]
        records.clear()
        async with start_gateway(log_level="INFO", access_log=False) as client:
            await client.get("/api/v1/orders", headers=headers)
        assert records == []
    finally:
        logger.removeHandler(handler)
