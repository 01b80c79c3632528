"""Rate limits per user and per IP in Redis; failing open when Redis is gone."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from redis.asyncio import Redis

from gateway.config import RateLimit
from krika_common.server import free_port

from .conftest import StartGateway
from .upstreams import Upstreams


async def test_per_user_limit_answers_429_with_retry_after(
    start_gateway: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    limits = {"orders": RateLimit(per_user=3, per_ip=1000, window=60)}
    alice, bob = mint_token(sub=uuid.uuid4()), mint_token(sub=uuid.uuid4())
    async with start_gateway(rate_limits=limits) as client:
        for _ in range(3):
            ok = await client.get("/api/v1/orders", headers={"Authorization": f"Bearer {alice}"})
            assert ok.status_code == 200
        refused = await client.get("/api/v1/orders", headers={"Authorization": f"Bearer {alice}"})
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert len(upstreams.hits) == 3
        # Another user, and another group, are not affected.
        ok = await client.get("/api/v1/orders", headers={"Authorization": f"Bearer {bob}"})
        assert ok.status_code == 200
        ok = await client.get("/api/v1/wallet", headers={"Authorization": f"Bearer {alice}"})
        assert ok.status_code == 200


async def test_auth_group_is_limited_per_ip(
    start_gateway: StartGateway, upstreams: Upstreams
) -> None:
    limits = {"auth": RateLimit(per_user=None, per_ip=2, window=60)}
    async with start_gateway(rate_limits=limits) as client:
        for _ in range(2):
            assert (await client.post("/api/v1/auth/login", json={})).status_code == 200
        # A made-up X-Forwarded-For does not buy a fresh bucket from an untrusted peer.
        refused = await client.post(
            "/api/v1/auth/login", json={}, headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        assert len(upstreams.hits) == 2


async def test_behind_a_trusted_proxy_the_forwarded_client_is_limited(
    start_gateway: StartGateway, upstreams: Upstreams
) -> None:
    limits = {"auth": RateLimit(per_user=None, per_ip=1, window=60)}
    async with start_gateway(rate_limits=limits, trusted_proxies=["127.0.0.1"]) as client:
        first = {"X-Forwarded-For": "198.51.100.7"}
        second = {"X-Forwarded-For": "198.51.100.8"}
        assert (await client.post("/api/v1/auth/login", json={}, headers=first)).status_code == 200
        assert (await client.post("/api/v1/auth/login", json={}, headers=first)).status_code == 429
        assert (await client.post("/api/v1/auth/login", json={}, headers=second)).status_code == 200


@pytest.fixture
def ratelimit_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("gateway.ratelimit")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


async def test_redis_down_fails_open_with_a_warning(
    start_gateway: StartGateway,
    upstreams: Upstreams,
    mint_token: Callable[..., str],
    ratelimit_log: list[logging.LogRecord],
) -> None:
    limits = {"orders": RateLimit(per_user=1, per_ip=1, window=60)}
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with start_gateway(redis_url=dead_redis, rate_limits=limits) as client:
        for _ in range(3):
            response = await client.get(
                "/api/v1/orders", headers={"Authorization": f"Bearer {mint_token()}"}
            )
            assert response.status_code == 200
        ready = await client.get(f"{client.ops_url}/readyz")
    assert len(upstreams.hits) == 3
    assert any("redis unavailable" in r.getMessage() for r in ratelimit_log)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"].startswith("failing")


async def test_concurrent_requests_are_counted_exactly(
    start_gateway: StartGateway, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    # Concurrent checks share pipelined round trips; each must still count once.
    limits = {"orders": RateLimit(per_user=10, per_ip=1000, window=60)}
    headers = {"Authorization": f"Bearer {mint_token()}"}
    async with start_gateway(rate_limits=limits) as client:
        responses = await asyncio.gather(
            *(client.get("/api/v1/orders", headers=headers) for _ in range(40))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 30
    assert len(upstreams.hits) == 10


async def test_limits_hold_after_redis_forgets_the_script(
    start_gateway: StartGateway, mint_token: Callable[..., str], redis_client: Redis
) -> None:
    limits = {"orders": RateLimit(per_user=2, per_ip=1000, window=60)}
    headers = {"Authorization": f"Bearer {mint_token()}"}
    async with start_gateway(rate_limits=limits) as client:
        assert (await client.get("/api/v1/orders", headers=headers)).status_code == 200
        await redis_client.script_flush()
        assert (await client.get("/api/v1/orders", headers=headers)).status_code == 200
        await redis_client.script_flush()
        burst = await asyncio.gather(
            *(client.get("/api/v1/orders", headers=headers) for _ in range(5))
        )
    assert [r.status_code for r in burst] == [429] * 5
