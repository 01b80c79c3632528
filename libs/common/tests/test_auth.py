"""`CurrentUser` and `require_role` as every service uses them: one Authorization header only,
access marks from identity's events honoured at once, privileged routes failing closed, and
the OpenAPI document telling all of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from redis.asyncio import Redis

from krika_common.access import AccessMarks, mark_key
from krika_common.auth import CurrentUser, Principal, require_role
from krika_common.config import KrikaSettings
from krika_common.events import Envelope, UserReinstated, UserRolesChanged, UserSuspended
from krika_common.schemas import Input
from krika_common.server import free_port
from krika_common.testing.jwt import TestKeys
from krika_common.web import install_http

Admin = Annotated[Principal, Depends(require_role("admin"))]


class Note(Input):
    text: str


def make_app(keys: TestKeys, redis: Redis | None) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"id": str(user.id)}

    @app.post("/admin/notes")
    async def admin_note(body: Note, admin: Admin) -> dict[str, str]:
        return {"by": str(admin.id)}

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    install_http(app, KrikaSettings(service_name="authsvc"))
    app.state.token_verifier = keys.verifier()
    if redis is not None:
        app.state.access_marks = AccessMarks(redis, ttl=900)
    return app


@pytest.fixture
async def client(test_keys: TestKeys, redis_client: Redis) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(test_keys, redis_client))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_two_authorization_headers_are_refused(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    mine, other = mint_token(roles=["customer"]), mint_token(roles=["admin"])
    headers = [("Authorization", f"Bearer {mine}"), ("Authorization", f"Bearer {other}")]
    response = await client.post("/admin/notes", json={"text": "x"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "ambiguous_credentials"
    assert (await client.get("/me", headers=headers)).status_code == 400
    assert (await client.get("/me", headers=bearer(mine))).status_code == 200


async def test_marks_refuse_older_tokens_at_once(
    client: httpx.AsyncClient, redis_client: Redis, mint_token: Callable[..., str]
) -> None:
    user = uuid.uuid4()
    marks = AccessMarks(redis_client, ttl=900)
    old = mint_token(user, roles=["admin"], ver=3)
    assert (await client.post("/admin/notes", json={"text": "x"}, headers=bearer(old))).is_success

    assert await marks.record(user, 4, suspended=True)
    suspended = await client.get("/me", headers=bearer(old))
    assert suspended.status_code == 403
    assert suspended.json()["error"] == "account_suspended"

    assert await marks.record(user, 5, suspended=False)  # reinstated: old tokens stay dead
    revoked = await client.post("/admin/notes", json={"text": "x"}, headers=bearer(old))
    assert revoked.status_code == 401
    assert revoked.json()["error"] == "token_revoked"
    fresh = mint_token(user, roles=["admin"], ver=5)
    assert (await client.post("/admin/notes", json={"text": "x"}, headers=bearer(fresh))).is_success
    assert 800 < await redis_client.ttl(mark_key(user)) <= 960


async def test_marks_only_move_forward(redis_client: Redis) -> None:
    user = uuid.uuid4()
    marks = AccessMarks(redis_client, ttl=900)
    assert await marks.record(user, 7, suspended=False)
    # The suspension (v6) delivered after the reinstatement (v7): it must not win.
    assert not await marks.record(user, 6, suspended=True)
    assert not await marks.record(user, 7, suspended=True)  # a duplicate changes nothing
    assert await redis_client.hgetall(mark_key(user)) == {b"v": b"7", b"s": b"0"}


async def test_marks_follow_identitys_events(
    redis_client: Redis, event_bus_factory: Callable[..., Any]
) -> None:
    from krika_common.events import EventBus

    marks = AccessMarks(redis_client, ttl=900)
    bus: EventBus = event_bus_factory("marks")
    marks.subscribe(bus)
    await bus.connect()
    await bus.start()
    user, now = uuid.uuid4(), datetime.now(UTC)
    for data in (
        UserSuspended(user_id=user, reason=None, suspended_at=now, token_version=2),
        UserReinstated(user_id=user, reinstated_at=now, token_version=3),
        UserRolesChanged(user_id=user, roles=["provider"], changed_at=now, token_version=4),
    ):
        await bus.publish(Envelope.wrap(data, producer="identity"))
    from krika_common.testing import eventually

    async def at_version_4() -> bool:
        return await redis_client.hget(mark_key(user), "v") == b"4"

    await eventually(at_version_4, what="the mark at version 4")
    assert await redis_client.hget(mark_key(user), "s") == b"0"


async def test_privileged_routes_fail_closed_when_marks_cannot_be_read(
    test_keys: TestKeys, mint_token: Callable[..., str]
) -> None:
    dead = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    transport = httpx.ASGITransport(app=make_app(test_keys, dead))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        token = mint_token(roles=["admin"])
        admin = await client.post("/admin/notes", json={"text": "x"}, headers=bearer(token))
        assert admin.status_code == 503
        assert admin.json()["error"] == "access_check_unavailable"
        assert admin.headers["retry-after"] == "1"
        assert (await client.get("/me", headers=bearer(token))).status_code == 200  # fail open
    await dead.aclose()


def test_openapi_tells_every_answer_with_its_code(test_keys: TestKeys) -> None:
    spec = make_app(test_keys, None).openapi()
    schemas = spec["components"]["schemas"]

    def codes(path: str, method: str, status: str) -> set[str]:
        content = spec["paths"][path][method]["responses"][status]["content"]
        schema = content["application/json"]["schema"]
        refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
        return {schemas[r.rsplit("/", 1)[1]]["properties"]["error"]["const"] for r in refs}

    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    admin = spec["paths"]["/admin/notes"]["post"]
    assert admin["security"] == [{"bearerAuth": []}]
    assert codes("/admin/notes", "post", "401") == {
        "unauthorized",
        "invalid_token",
        "token_expired",
        "token_revoked",
    }
    assert codes("/admin/notes", "post", "403") == {"forbidden", "account_suspended"}
    assert codes("/admin/notes", "post", "400") == {"ambiguous_credentials"}
    assert codes("/admin/notes", "post", "413") == {"payload_too_large"}
    assert codes("/admin/notes", "post", "422") == {"validation_error"}
    assert codes("/admin/notes", "post", "503") == {"overloaded", "access_check_unavailable"}
    assert codes("/me", "get", "403") == {"account_suspended"}
    public = spec["paths"]["/public"]["get"]
    assert "security" not in public
    assert set(public["responses"]) == {"200", "503"}
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
