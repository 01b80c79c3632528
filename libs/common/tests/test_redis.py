"""krika_common.access.connect_redis: a bounded pool that makes a burst wait, not fail."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from krika_common.access import connect_redis
from krika_common.config import KrikaSettings


async def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_url: str) -> None:
    settings = KrikaSettings(redis_url=redis_url, redis_max_connections=2, redis_timeout=5.0)
    redis = connect_redis(settings)
    try:
        # Each BLPOP holds its connection 0.2 s: 10 of them through 2 connections all succeed.
        results = await asyncio.gather(
            *(redis.blpop([f"krika:test:empty:{i}"], timeout=0.2) for i in range(10))
        )
        assert results == [None] * 10
        assert redis.connection_pool.max_connections == 2
    finally:
        await redis.aclose()


async def test_no_free_connection_within_the_timeout_is_an_error(redis_url: str) -> None:
    settings = KrikaSettings(redis_url=redis_url, redis_max_connections=1, redis_timeout=0.05)
    redis = connect_redis(settings, socket_timeout=2.0)
    try:

        async def hold() -> None:
            await redis.blpop(["krika:test:empty:hold"], timeout=0.5)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        with pytest.raises(RedisConnectionError):
            await redis.ping()
        await holder
    finally:
        await redis.aclose()
