"""The HTTP edge every service shares: error shape, validation, request ids, metrics, readiness."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict, ValidationError

from krika_common.config import DEV_PLACEHOLDER, KrikaSettings
from krika_common.errors import Conflict, install_error_handlers
from krika_common.telemetry import install_operations


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int


class OrderInWrongState(Conflict):
    code = "order_in_wrong_state"


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_operations(app, "testsvc")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        if order_id == 9:
            raise OrderInWrongState("Order 9 is already completed")
        return {"id": order_id}

    @app.post("/orders")
    async def place(body: Body) -> Body:
        return body

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


async def test_request_id_is_echoed_or_minted(client: httpx.AsyncClient) -> None:
    given = await client.get("/orders/1", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/orders/1", headers={"X-Request-ID": "bad id\twith junk"})
    assert hostile.headers["x-request-id"] != "bad id\twith junk"
    assert len(hostile.headers["x-request-id"]) == 32


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
