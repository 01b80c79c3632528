"""Per-user and per-IP rate limits, and the user's access mark, in Redis.

One Lua script per request does everything atomically in one round trip: a fixed window per
key (INCR, and EXPIRE on the window's first hit), for the client's IP and - when signed in -
for the user, plus the lookup of the user's access mark (krika_common.access).

When Redis does not answer the gateway fails open: requests are served without limits and a
warning is logged (at most once per `redis_retry_after`, during which Redis is not retried so
a dead Redis costs no per-request timeout). Availability of the marketplace beats strict
throttling for the few seconds a Redis failover takes; the services keep their own throttles
where abuse matters most (identity's login throttling).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.config import RateLimit
from krika_common.access import mark_key, parse_mark

log = logging.getLogger("gateway.ratelimit")

# KEYS: ip counter, user counter ("" when anonymous or off), access mark ("" when anonymous)
# ARGV: window seconds, ip limit (0 = off), user limit (0 = off)
# Returns {seconds until the IP may retry (0 = allowed), same for the user, the mark's version
# (-1: no mark), 1 when the mark says suspended}.
_SCRIPT = """
local window = tonumber(ARGV[1])
local result = {0, 0, -1, 0}
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
if KEYS[3] ~= '' then
  local mark = redis.call('HMGET', KEYS[3], 'v', 's')
  result[3] = tonumber(mark[1] or '-1') or -1
  result[4] = mark[2] == '1' and 1 or 0
end
return result
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    retry_after: int = 0  # > 0: refuse with 429 and this Retry-After
    mark_version: int | None = None  # the user's access mark, if any
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


Checks = list[tuple[tuple[str, str, str], tuple[int, int, int], "asyncio.Future[list[int]]"]]


class RateLimiter:
    """Runs the script for each request; concurrent requests share one pipelined round trip.

    Auto-pipelining: while one batch is in flight, new checks queue up and go together in the
    next one (one write, one read, no per-command pool checkout), so under load the cost per
    request falls, while a lone request is sent at once and waits for nobody.
    """

    def __init__(self, redis: Redis, *, retry_after_failure: float = 1.0) -> None:
        self._redis = redis
        self._sha = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis's script id
        self._skip_until = 0.0
        self._retry_after_failure = retry_after_failure
        self._queue: Checks = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None

    async def check(
        self,
        group: str,
        limit: RateLimit,
        ip: str,
        user_id: str | None,
    ) -> Verdict:
        """The limits' verdict for this request, and the user's access mark."""
        if self._skip_until and time.monotonic() < self._skip_until:
            return ALLOW
        ip_limit = limit.per_ip or 0
        user_limit = (limit.per_user or 0) if user_id else 0
        if not (ip_limit or user_id):
            return ALLOW
        keys = (
            f"gw:rl:{group}:ip:{ip}" if ip_limit else "",
            f"gw:rl:{group}:user:{user_id}" if user_limit else "",
            mark_key(user_id) if user_id else "",
        )
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, (limit.window, ip_limit, user_limit), future))
        if not self._busy:
            self._busy = True
            await self._send_batch()
        try:
            ip_wait, user_wait, version, suspended = await future
        except (RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + self._retry_after_failure
            log.warning(
                "redis unavailable, rate limits and access marks not enforced: %s: %s",
                type(exc).__name__,
                exc,
            )
            return ALLOW
        self._skip_until = 0.0
        wait = max(int(ip_wait), int(user_wait))
        if int(version) < 0 and not wait:
            return ALLOW
        mark_version, is_suspended = parse_mark(str(version), str(suspended))
        return Verdict(
            retry_after=wait,
            mark_version=mark_version if int(version) >= 0 else None,
            suspended=is_suspended,
        )

    async def _send_batch(self) -> None:
        batch, self._queue = self._queue, []
        try:
            await self._run(batch)
        finally:
            for *_, future in batch:  # never leave a waiter hanging (e.g. on cancellation)
                if not future.done():
                    future.set_exception(RedisError("rate-limit batch abandoned"))
            if self._queue:
                # Checks queued meanwhile: a task sends them, so this request goes on.
                self._drainer = asyncio.get_running_loop().create_task(self._send_batch())
            else:
                self._busy = False

    async def _run(self, batch: Checks) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                results = [await self._evalsha(keys, args)]
            else:
                results = await self._pipeline(batch)
            if any(isinstance(r, NoScriptError) for r in results):
                # Redis restarted or flushed its scripts: load it and try those again.
                await self._redis.script_load(_SCRIPT)
                failed = [isinstance(r, NoScriptError) for r in results]
                retry = [check for check, f in zip(batch, failed, strict=True) if f]
                again = iter(await self._pipeline(retry))
                results = [next(again) if f else r for r, f in zip(results, failed, strict=True)]
        except (RedisError, OSError) as exc:
            results = [exc] * len(batch)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)  # type: ignore[arg-type]  # the script's 3 integers

    async def _evalsha(self, keys: tuple[str, str, str], args: tuple[int, int, int]) -> object:
        try:
            return await self._redis.evalsha(self._sha, 3, *keys, *args)
        except NoScriptError as exc:
            return exc

    async def _pipeline(self, batch: Checks) -> list[object]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._sha, 3, *keys, *args)
        results: list[object] = await pipe.execute(raise_on_error=False)
        return results
