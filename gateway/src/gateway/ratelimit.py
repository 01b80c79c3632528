"""Per-user and per-IP rate limits, and the suspended-user list, in Redis.

One Lua script per request does everything atomically in one round trip: a fixed window per
key (INCR, and EXPIRE on the window's first hit), for the client's IP and - when signed in -
for the user, plus the lookup of the user's suspension mark.

When Redis does not answer the gateway fails open: requests are served without limits and a
warning is logged (at most once per `redis_retry_after`, during which Redis is not retried so
a dead Redis costs no per-request timeout). Availability of the marketplace beats strict
throttling for the few seconds a Redis failover takes; the services keep their own throttles
where abuse matters most (identity's login throttling).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.config import RateLimit

log = logging.getLogger("gateway.ratelimit")

SUSPENDED_PREFIX = "gw:suspended:"

# KEYS: ip counter, user counter ("" when anonymous), suspension mark ("" when anonymous)
# ARGV: window seconds, ip limit (0 = off), user limit (0 = off)
# Returns {seconds until the IP may retry (0 = allowed), same for the user, suspended 0/1}.
_SCRIPT = """
local window = tonumber(ARGV[1])
local result = {0, 0, 0}
for i = 1, 2 do
  local limit = tonumber(ARGV[i + 1])
  if limit > 0 and KEYS[i] ~= '' then
    local n = redis.call('INCR', KEYS[i])
    if n == 1 then
      redis.call('EXPIRE', KEYS[i], window)
    elseif n > limit then
      local ttl = redis.call('TTL', KEYS[i])
      if ttl == -1 then
        redis.call('EXPIRE', KEYS[i], window)
        ttl = window
      elseif ttl < 1 then
        ttl = 1
      end
      result[i] = ttl
    end
  end
end
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  result[3] = 1
end
return result
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    retry_after: int = 0  # > 0: refuse with 429 and this Retry-After
    suspended: bool = False


ALLOW = Verdict()


def connect_redis(url: str, timeout: float) -> Redis:
    # No retries: a failing Redis must cost a request at most one short timeout.
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RateLimiter:
    def __init__(self, redis: Redis, *, retry_after_failure: float = 1.0) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._skip_until = 0.0
        self._retry_after_failure = retry_after_failure

    async def check(self, group: str, limit: RateLimit, ip: str, user_id: str | None) -> Verdict:
        if self._skip_until and time.monotonic() < self._skip_until:
            return ALLOW
        ip_limit = limit.per_ip or 0
        user_limit = (limit.per_user or 0) if user_id else 0
        keys = (
            f"gw:rl:{group}:ip:{ip}" if ip_limit else "",
            f"gw:rl:{group}:user:{user_id}" if user_limit else "",
            f"{SUSPENDED_PREFIX}{user_id}" if user_id else "",
        )
        if not (ip_limit or user_id):
            return ALLOW
        try:
            ip_wait, user_wait, suspended = await self._script(
                keys=keys, args=(limit.window, ip_limit, user_limit)
            )
        except (RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + self._retry_after_failure
            log.warning(
                "redis unavailable, rate limits and suspensions not enforced: %s: %s",
                type(exc).__name__,
                exc,
            )
            return ALLOW
        self._skip_until = 0.0
        if suspended:
            return Verdict(suspended=True)
        wait = max(int(ip_wait), int(user_wait))
        return Verdict(retry_after=wait) if wait else ALLOW


async def suspend_user(redis: Redis, user_id: str, ttl: int) -> None:
    """Refuse the user's still-valid access tokens until they have all expired."""
    await redis.set(f"{SUSPENDED_PREFIX}{user_id}", b"1", ex=ttl)
