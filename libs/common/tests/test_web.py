"""The HTTP edge every service shares: error shape, validation, request ids, metrics, readiness."""

from __future__ import annotations

import logging
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query, Request
from prometheus_client import REGISTRY
from pydantic import Field, ValidationError

from krika_common.config import DEV_PLACEHOLDER, KrikaSettings
from krika_common.edge import client_ip
from krika_common.errors import Conflict, responses
from krika_common.schemas import Input, Line
from krika_common.testing.http import serving
from krika_common.web import install_http

EDGE = "edge-secret-for-tests"


class Body(Input):
    amount: int
    note: str = ""
    tags: list[str] = Field(default_factory=list)


class OrderInWrongState(Conflict):
    code = "order_in_wrong_state"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}", responses=responses(OrderInWrongState))
    async def get_order(order_id: int) -> dict[str, int]:
        if order_id == 9:
            raise OrderInWrongState("Order 9 is already completed")
        return {"id": order_id}

    @app.post("/orders")
    async def place(body: Body) -> Body:
        return body

    @app.get("/search")
    async def search(q: Annotated[Line, Query(max_length=50)]) -> dict[str, str]:
        return {"q": q}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        return {"ip": client_ip(request)}

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret-ish internals")

    install_http(app, KrikaSettings(service_name="testsvc", edge_secret=EDGE))
    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    app = make_app()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_service_errors_render_with_code_and_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/9")
    assert response.status_code == 409
    assert response.json() == {
        "error": "order_in_wrong_state",
        "detail": "Order 9 is already completed",
    }


async def test_validation_errors_share_the_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"amount": "ten", "extra": 1})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert {tuple(d["loc"]) for d in body["detail"]} == {("body", "amount"), ("body", "extra")}
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_request_id_is_believed_only_from_the_gateway(client: httpx.AsyncClient) -> None:
    direct = await client.get("/orders/1", headers={"X-Request-ID": "abc-123"})
    assert direct.headers["x-request-id"] != "abc-123"
    assert len(direct.headers["x-request-id"]) == 32
    via_gateway = {"X-Request-ID": "abc-123", "X-Krika-Edge": EDGE}
    given = await client.get("/orders/1", headers=via_gateway)
    assert given.headers["x-request-id"] == "abc-123"
    wrong_secret = await client.get(
        "/orders/1", headers={"X-Request-ID": "abc-123", "X-Krika-Edge": "guess"}
    )
    assert wrong_secret.headers["x-request-id"] != "abc-123"
    hostile = await client.get(
        "/orders/1", headers={"X-Request-ID": "bad id\twith junk", "X-Krika-Edge": EDGE}
    )
    assert hostile.headers["x-request-id"] != "bad id\twith junk"
    assert len(hostile.headers["x-request-id"]) == 32


async def test_client_ip_comes_from_the_gateway_only(client: httpx.AsyncClient) -> None:
    spoof = {"X-Forwarded-For": "9.9.9.9", "X-Krika-Client-IP": "9.9.9.9"}
    direct = await client.get("/whoami", headers=spoof)
    assert direct.json()["ip"] == "127.0.0.1"  # ASGITransport's peer
    gateway = await client.get(
        "/whoami", headers={"X-Krika-Client-IP": "203.0.113.7", "X-Krika-Edge": EDGE}
    )
    assert gateway.json()["ip"] == "203.0.113.7"
    junk = await client.get("/whoami", headers={"X-Krika-Client-IP": "x", "X-Krika-Edge": EDGE})
    assert junk.json()["ip"] == "127.0.0.1"


@pytest.mark.parametrize("bad", ["A\u0000B", "bell\u0007", "esc\u001b[31m", "del\u007f"])
async def test_control_characters_are_refused_in_every_string(
    client: httpx.AsyncClient, bad: str
) -> None:
    for body in ({"amount": 1, "note": bad}, {"amount": 1, "tags": ["ok", bad]}):
        response = await client.post("/orders", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
        assert response.json()["detail"][0]["type"] == "control_characters"
    query = await client.get("/search", params={"q": bad})
    assert query.status_code == 422
    assert query.json()["detail"][0]["type"] == "control_characters"


async def test_text_keeps_its_line_breaks_but_a_line_does_not(client: httpx.AsyncClient) -> None:
    ok = await client.post("/orders", json={"amount": 1, "note": "line one\n\tline two\r\n"})
    assert ok.status_code == 200
    assert (await client.get("/search", params={"q": "a\nb"})).status_code == 422


async def test_a_huge_invalid_body_gets_a_bounded_answer(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"amount": 1, "tags": [1] * 50_000})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 21
    assert detail[-1] == {"loc": [], "msg": "and 49980 more problems", "type": "truncated"}
    assert len(response.content) < 5_000


async def test_an_unhandled_error_is_a_json_500_and_the_connection_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(make_app()) as url, httpx.AsyncClient(base_url=url) as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/boom")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "internal_error", "detail": "Internal server error"}
        assert "connection" not in response.headers  # uvicorn keeps it open: no close
        assert any("unhandled error in GET /boom" in r.getMessage() for r in caplog.records)
        assert (await client.get("/orders/1")).status_code == 200


async def test_no_redirect_to_the_internal_address(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/1/")
    assert response.status_code == 404
    assert "location" not in response.headers


async def test_metrics_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    labels = {"service": "testsvc", "method": "GET", "route": "/orders/{order_id}", "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    for order_id in (1, 2, 3):
        await client.get(f"/orders/{order_id}")
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 3
    await client.request("BREW", "/orders/1")  # arbitrary methods must not mint series
    text = (await client.get("/metrics")).text
    assert 'route="/orders/1"' not in text
    assert 'method="BREW"' not in text
    assert 'method="OTHER"' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_readiness_reports_each_dependency() -> None:
    app = make_app()

    async def fine() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("down")

    app.state.readiness.update(database=fine, broker=broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "broker": "failing: ConnectionError"}


class SecretSettings(KrikaSettings):
    pepper: str = DEV_PLACEHOLDER

    def secret_fields(self) -> dict[str, str]:
        return {"pepper": self.pepper}


def test_default_secrets_are_refused_outside_development() -> None:
    assert SecretSettings(environment="development").pepper == DEV_PLACEHOLDER
    with pytest.raises(ValidationError, match="production refuses default secrets: pepper"):
        SecretSettings(environment="production")
    assert SecretSettings(environment="production", pepper="s3cret").pepper == "s3cret"


async def test_a_body_that_is_not_utf8_is_a_422_like_any_malformed_json(
    client: httpx.AsyncClient,
) -> None:
    for body in (b"\x80\x81", b'{"amount": 1'):
        response = await client.post(
            "/orders", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_the_access_line_has_the_shape_of_every_other_log_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import json
    import sys

    from krika_common import telemetry

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, telemetry._access_lines)
    try:
        telemetry.configure_logging("testsvc", "INFO")
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_app()), base_url="http://t"
        )
        response = await client.get("/orders/1")
        logging.getLogger("testsvc.access").info("GET /elsewhere 200", extra={"status": 200})
        logging.getLogger("testsvc.access").setLevel(logging.WARNING)  # the switch still works
        await client.get("/orders/2")
    finally:
        root.handlers[:], _, telemetry._access_lines = saved
        root.setLevel(saved[1])
        logging.getLogger("testsvc.access").setLevel(logging.NOTSET)

    direct, through_logging = [json.loads(line) for line in out.getvalue().splitlines()]
    assert direct["message"] == "GET /orders/{order_id} 200"
    assert direct["request_id"] == response.headers["x-request-id"]
    assert direct["status"] == 200
    assert isinstance(direct["duration_ms"], float)
    assert list(direct) == [*through_logging, "duration_ms"]  # same fields, same order
    for field in ("level", "logger", "service", "trace_id", "user_id"):
        assert direct[field] == through_logging[field]
    assert len(direct["time"]) == len(through_logging["time"])
    assert direct["time"][:16] == through_logging["time"][:16]
