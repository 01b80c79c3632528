"""One OpenAPI document for the whole public API, merged from every running service.

Each service's `/openapi.json` is fetched with a short timeout (services that are down are
left out and listed under `x-krika-services`); only the paths the gateway routes to that
service are kept, prefixed with /api/v1 (so ops-only paths - /healthz, /metrics, the JWKS -
drop out); component names that two services define differently are prefixed with the
service name, and every `$ref` to them rewritten. Every operation also lists the answers the
gateway itself may give before the service is reached (rate limits, refused credentials, a
service down: `GATEWAY_ANSWERS`, and `TOKEN_ANSWERS` where a token is needed), each body with
its literal `error` code. The result is cached for a short TTL.

Swagger UI itself (`/api/docs`) is served by the gateway too, from the files the installed
`fastapi-offline` package ships, so the docs work without internet access (`SwaggerAssets`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections import defaultdict
from importlib.resources import files
from typing import Any

import httpx

from gateway.core import GATEWAY_ANSWERS, TOKEN_ANSWERS, Gateway
from gateway.routes import SERVICE_OF_GROUP, PublicRoutes
from krika_common.errors import PayloadTooLarge, ServiceError, responses

log = logging.getLogger("gateway.docs")

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
BEARER_SCHEME = "bearerAuth"

GROUPS_OF_SERVICE: dict[str, set[str]] = defaultdict(set)
for _group, _service in SERVICE_OF_GROUP.items():
    GROUPS_OF_SERVICE[_service].add(_group)


class SwaggerAssets:
    """Swagger UI's files from the installed fastapi-offline package, read once per process.

    Their URLs carry a hash of the files, so they can be cached as immutable: another
    fastapi-offline version means other URLs.
    """

    def __init__(self) -> None:
        static = files("fastapi_offline") / "static"
        self.files = {  # name -> (content, media type)
            name: ((static / name).read_bytes(), media_type)
            for name, media_type in (
                ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
                ("swagger-ui.css", "text/css; charset=utf-8"),
                ("favicon.png", "image/png"),
            )
        }
        digest = hashlib.sha256()
        for name, (content, _) in self.files.items():
            digest.update(name.encode() + b"\0" + content)
        self.version = digest.hexdigest()[:16]


@functools.cache
def swagger_assets() -> SwaggerAssets:
    return SwaggerAssets()


class ApiDocs:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._cached: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def spec(self) -> dict[str, Any]:
        if self._cached is not None and time.monotonic() < self._expires:
            return self._cached
        async with self._lock:
            if self._cached is None or time.monotonic() >= self._expires:
                specs = await self._fetch_all()
                self._cached = merge_specs(specs, self._gateway.public)
                self._expires = time.monotonic() + self._gateway.settings.docs_cache_ttl
            return self._cached

    async def _fetch_all(self) -> dict[str, dict[str, Any] | None]:
        services = list(GROUPS_OF_SERVICE)
        found = await asyncio.gather(*(self._fetch(s) for s in services))
        return dict(zip(services, found, strict=True))

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        url = self._gateway.base_url(service).copy_with(raw_path=b"/openapi.json")
        try:
            response = await self._gateway.http.get(
                url, timeout=self._gateway.settings.docs_fetch_timeout
            )
            response.raise_for_status()
            spec = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("no OpenAPI from %s: %s", service, type(exc).__name__)
            return None
        return spec if isinstance(spec, dict) else None


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = renames.get(value, value)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _routed_paths(service: str, paths: dict[str, Any]) -> dict[str, Any]:
    groups = GROUPS_OF_SERVICE[service]
    return {
        f"/api/v1{path}": item
        for path, item in paths.items()
        if path.startswith("/") and path.split("/")[1] in groups
    }


def _add_answers(
    op: dict[str, Any], errors: list[type[ServiceError]], schemas: dict[str, Any]
) -> None:
    """Add `errors` to the operation's responses, beside what the service documents."""
    for status, doc in responses(*errors).items():
        entry = op.setdefault("responses", {}).setdefault(str(status), {"description": ""})
        content = entry.setdefault("content", {}).setdefault("application/json", {})
        schema = content.get("schema", {})
        members = list(schema.get("anyOf", [schema] if schema else []))
        codes = {
            schemas.get(m.get("$ref", "").rsplit("/", 1)[-1], {})
            .get("properties", {})
            .get("error", {})
            .get("const")
            for m in members
        }
        for error in errors:
            if error.status != status or error.code in codes:
                continue
            model = error.body_model()
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            name = model.__name__
            if schemas.get(name, definition) != definition:
                name = f"gateway_{name}"
            schemas[name] = definition
            members.append({"$ref": f"#/components/schemas/{name}"})
            codes.add(error.code)
        content["schema"] = members[0] if len(members) == 1 else {"anyOf": members}
        described = entry.get("description") or ""
        extra = doc["description"]
        entry["description"] = f"{described}; {extra}" if described else extra


def merge_specs(specs: dict[str, dict[str, Any] | None], public: PublicRoutes) -> dict[str, Any]:
    """Merge per-service OpenAPI documents (None: the service did not answer)."""
    available = {name: spec for name, spec in specs.items() if spec is not None}

    # Which component names are defined differently by more than one service.
    definitions: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for service, spec in available.items():
        for section, entries in (spec.get("components") or {}).items():
            for name, value in (entries or {}).items():
                definitions[(section, name)][service] = json.dumps(value, sort_keys=True)
    colliding = {key for key, found in definitions.items() if len(set(found.values())) > 1}

    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = defaultdict(dict)
    tags: dict[str, dict[str, Any]] = {}
    for service, spec in available.items():
        renames: dict[str, str] = {}
        for section, entries in (spec.get("components") or {}).items():
            for name in entries or {}:
                if (section, name) in colliding:
                    renames[f"#/components/{section}/{name}"] = (
                        f"#/components/{section}/{service}_{name}"
                    )
        spec = _rewrite_refs(spec, renames)
        for section, entries in (spec.get("components") or {}).items():
            for name, value in (entries or {}).items():
                merged_name = f"{service}_{name}" if (section, name) in colliding else name
                components[section][merged_name] = value
        paths.update(_routed_paths(service, spec.get("paths") or {}))
        for tag in spec.get("tags") or []:
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)

    # Operation ids must be unique across the document: prefix the ones that are not.
    owners: dict[str, int] = defaultdict(int)
    for item in paths.values():
        for method, op in item.items():
            if method in _METHODS and isinstance(op, dict) and "operationId" in op:
                owners[op["operationId"]] += 1
    for path, item in paths.items():
        service = SERVICE_OF_GROUP[path.split("/")[3]]
        for method, op in item.items():
            if method not in _METHODS or not isinstance(op, dict):
                continue
            if owners.get(op.get("operationId", ""), 0) > 1:
                op["operationId"] = f"{service}_{op['operationId']}"
            # Swagger UI's "Authorize" applies to every route but the public ones.
            answers = list(GATEWAY_ANSWERS)
            if public.allows_template(method, path):
                op["security"] = []
            else:
                op.setdefault("security", [{BEARER_SCHEME: []}])
                answers += TOKEN_ANSWERS
            if "requestBody" in op:
                answers.append(PayloadTooLarge)
            _add_answers(op, answers, components["schemas"])

    components["securitySchemes"][BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Krika API",
            "version": "1.0.0",
            "description": "Every Krika service's public API, as served through the gateway.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {section: dict(sorted(v.items())) for section, v in components.items()},
        "tags": list(tags.values()),
        "x-krika-services": {
            name: ("up" if spec is not None else "unavailable") for name, spec in specs.items()
        },
    }
