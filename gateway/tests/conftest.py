"""Fixtures: the fake upstreams (tests/upstreams.py) on free ports, and gateways in front.

notify points at a port where nothing listens. The gateway under test runs in uvicorn too
(not an in-memory transport, which would buffer responses), in the same event loop, so the
tests can gate the upstreams with asyncio events.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.config import RateLimit, Settings
from krika_common.events import EventBus
from krika_common.server import free_port
from krika_common.testing.jwt import TestKeys

from .upstreams import Upstreams, catalog_app, echo_app, identity_app, serve, socketio_app


class GatewayClient(httpx.AsyncClient):
    """A client on a test gateway's public port, which knows its operations port's URL."""

    ops_url: str


StartGateway = Callable[..., contextlib.AbstractAsyncContextManager[GatewayClient]]


@pytest_asyncio.fixture(scope="session")
async def upstream_servers(test_keys: TestKeys) -> AsyncIterator[tuple[Upstreams, dict[str, str]]]:
    state = Upstreams(test_keys)
    async with (
        serve(identity_app(state)) as identity,
        serve(catalog_app(state)) as catalog,
        serve(echo_app(state)) as echo,
        serve(socketio_app(state)) as realtime,
    ):
        yield (
            state,
            {
                "identity": identity,
                "catalog": catalog,
                "echo": echo,
                "socketio": realtime,
                "closed": f"http://127.0.0.1:{free_port()}",
            },
        )


@pytest.fixture
def upstreams(upstream_servers: tuple[Upstreams, dict[str, str]]) -> Upstreams:
    state, _ = upstream_servers
    state.reset()
    return state


@pytest.fixture
def upstream_urls(upstream_servers: tuple[Upstreams, dict[str, str]]) -> dict[str, str]:
    return upstream_servers[1]


@pytest.fixture
def settings_factory(upstream_urls: dict[str, str], redis_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "identity_url": upstream_urls["identity"],
            "catalog_url": upstream_urls["catalog"],
            "orders_url": upstream_urls["echo"],
            "payments_url": upstream_urls["echo"],
            "ledger_url": upstream_urls["echo"],
            "chat_url": upstream_urls["echo"],
            "notify_url": upstream_urls["closed"],
            "jwks_url": f"{upstream_urls['identity']}/.well-known/jwks.json",
            "redis_url": redis_url,
            "rate_limit_default": RateLimit(per_user=10_000, per_ip=10_000),
            "rate_limits": {},
            "jwks_refetch_cooldown": 0.0,
            "log_level": "WARNING",
            "consume_events": False,
            "edge_secret": "gateway-test-edge",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def start_gateway(
    settings_factory: Callable[..., Settings],
    upstreams: Upstreams,
    redis_client: Redis,
) -> StartGateway:
    """Start a gateway (in uvicorn) with settings overrides; yields a client on it."""

    @contextlib.asynccontextmanager
    async def start(
        event_bus: EventBus | None = None, **overrides: Any
    ) -> AsyncIterator[GatewayClient]:
        ops_port = free_port()
        app = create_app(settings_factory(ops_port=ops_port, **overrides), event_bus=event_bus)
        async with (
            serve(app, None, ops_port) as url,
            GatewayClient(base_url=url, timeout=30.0, trust_env=False) as client,
        ):
            client.ops_url = f"http://127.0.0.1:{ops_port}"
            yield client

    return start


@pytest_asyncio.fixture
async def client(start_gateway: StartGateway) -> AsyncIterator[GatewayClient]:
    """A client on a gateway with the default test settings."""
    async with start_gateway() as c:
        yield c
