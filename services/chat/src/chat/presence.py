"""Presence: who has an open realtime connection, on any replica (Redis).

Per user a sorted set `krika:chat:presence:<user>` of connection ids, each scored by the time it
stops counting. A replica adds a connection when it opens, removes it when it closes and moves
the scores of all its connections forward every heartbeat, so a replica that dies stops counting
its connections after `ttl` seconds. A user is online while their set holds a live entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis.asyncio import Redis

PREFIX = "krika:chat:presence:"


def presence_key(user_id: str) -> str:
    return f"{PREFIX}{user_id}"


class Presence:
    def __init__(self, redis: Redis, ttl: float) -> None:
        self.redis = redis
        self.ttl = ttl

    async def connected(self, user_id: str, connection: str) -> int:
        """Count `connection` for the user; how many live connections they have now."""
        key, now = presence_key(user_id), time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {connection: now + self.ttl})
            pipe.expire(key, int(self.ttl * 2) + 1)
            pipe.zcard(key)
            results = await pipe.execute()
        return int(results[-1])

    async def disconnected(self, user_id: str, connection: str) -> int:
        """Stop counting `connection`; how many live connections the user still has."""
        key = presence_key(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, connection)
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.zcard(key)
            results = await pipe.execute()
        return int(results[-1])

    async def refresh(self, connections: Iterable[tuple[str, str]]) -> None:
        """Move forward the expiry of these (user, connection) pairs (the heartbeat)."""
        until = time.time() + self.ttl
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, connection in connections:
                key = presence_key(user_id)
                pipe.zadd(key, {connection: until}, xx=True)
                pipe.expire(key, int(self.ttl * 2) + 1)
            await pipe.execute()

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users have a live connection."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return set()
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                pipe.zcount(presence_key(user_id), now, "+inf")
            counts = await pipe.execute()
        return {user for user, count in zip(users, counts, strict=True) if int(count) > 0}
