"""Login throttling in Redis: failures counted per account and per IP within a window."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from krika_common.errors import TooManyRequests


class LoginThrottled(TooManyRequests):
    code = "too_many_login_attempts"
    message = "Too many failed login attempts; try again later"


class LoginThrottle:
    def __init__(self, redis: Redis, *, per_account: int, per_ip: int, window: int) -> None:
        self._redis = redis
        self._limits = (per_account, per_ip)
        self._window = window

    @staticmethod
    def _keys(email: str, ip: str) -> tuple[str, str]:
        # Hashed so e-mail addresses never sit in Redis in clear.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        return f"identity:login-fail:acct:{account}", f"identity:login-fail:ip:{ip}"

    async def check(self, email: str, ip: str) -> None:
        """Raise 429 with Retry-After when either counter has reached its limit."""
        keys = self._keys(email, ip)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            account_n, account_ttl, ip_n, ip_ttl = await pipe.execute()
        for count, ttl, limit in (
            (account_n, account_ttl, self._limits[0]),
            (ip_n, ip_ttl, self._limits[1]),
        ):
            if count is not None and int(count) >= limit:
                raise LoginThrottled(retry_after=ttl if ttl and ttl > 0 else self._window)

    async def failed(self, email: str, ip: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(email, ip):
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            await pipe.execute()

    async def succeeded(self, email: str, ip: str) -> None:
        await self._redis.delete(self._keys(email, ip)[0])
