"""Access marks: what changed about a user's access after their access tokens were issued.

An access token is self-contained for its lifetime, so a suspension or a role change would only
reach its holder at the next refresh. identity therefore gives every user a `token_version`
(the `ver` claim of their tokens), bumps it on suspension, reinstatement and role changes, and
says so in `identity.user_suspended`, `identity.user_reinstated` and
`identity.user_roles_changed`. Whoever consumes those events (the gateway; a service's worker)
records a mark in Redis:

    krika:access:<user id>  hash {v: oldest token version still honoured, s: 1 while suspended}

kept for the longest access-token lifetime after the change (by then every older token has
expired), and announces the user id on the channel `krika:access` (the gateway closes the
user's live WebSockets). Events may arrive twice or out of order: a mark only moves forward.

Checking a principal against its mark is one HMGET. `CurrentUser` checks it when the app has
`state.access_marks`, and lets the request through if Redis does not answer (availability);
`require_role` refuses instead (503): privileged routes fail closed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from redis.asyncio import BlockingConnectionPool, Redis

from krika_common.errors import Forbidden, ServiceError, ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    from krika_common.auth import Principal
    from krika_common.config import KrikaSettings
    from krika_common.events import Envelope, EventBus

log = logging.getLogger(__name__)


def connect_redis(settings: KrikaSettings, *, socket_timeout: float | None = None) -> Redis:
    """The process's Redis client with every limit explicit: at most
    `redis_max_connections` connections, and a command that finds none free waits up to
    `redis_timeout` for one (redis-py's default pool has 100 and fails at once beyond them: a
    burst of requests would get 503s from `require_role`); connect and socket timeouts.
    `socket_timeout` overrides the timeouts (catalog's page cache has shorter ones)."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        socket_timeout=socket_timeout or settings.redis_timeout,
        socket_connect_timeout=socket_timeout or settings.redis_timeout,
    )
    return Redis.from_pool(pool)


MARK_PREFIX = "krika:access:"
CHANNEL = "krika:access"


class TokenRevoked(Unauthorized):
    code = "token_revoked"
    message = "The account changed after this access token was issued; refresh it"


class AccountSuspended(Forbidden):
    code = "account_suspended"
    message = "This account is suspended"
    # identity revokes the refresh-token family as it answers this: that change must commit.
    keeps_changes = True


class AccessCheckUnavailable(ServiceUnavailable):
    code = "access_check_unavailable"
    message = "The caller's current access cannot be confirmed right now; retry shortly"


def mark_key(user_id: uuid.UUID | str) -> str:
    return f"{MARK_PREFIX}{user_id}"


def refusal(version: int | None, suspended: bool, token_version: int) -> ServiceError | None:
    """The error for a token of `token_version` under the mark (version, suspended), if any."""
    if version is None:
        return None
    if suspended:
        return AccountSuspended()
    if token_version < version:
        return TokenRevoked()
    return None


def parse_mark(
    version: bytes | str | None, suspended: bytes | str | None
) -> tuple[int | None, bool]:
    """(version, suspended) from the hash fields as Redis returns them."""
    if version is None:
        return None, False
    try:
        return int(version), suspended in (b"1", "1")
    except ValueError:
        return None, False


# KEYS[1] mark; ARGV: version, suspended (0/1), ttl seconds, channel, user id.
_RECORD = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if tonumber(ARGV[1]) <= current then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


class AccessMarks:
    """Reads and writes the marks in `redis`; `ttl`: the longest access-token lifetime."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl + 60  # plus the verifiers' clock leeway, generously

    async def record(self, user_id: uuid.UUID, version: int, *, suspended: bool) -> bool:
        """Move the user's mark to `version`; False when it already was there or beyond."""
        key = mark_key(user_id)
        args = (version, int(suspended), self.ttl, CHANNEL, str(user_id))
        return bool(await self.redis.eval(_RECORD, 1, key, *args))

    async def refusal_for(self, principal: Principal) -> ServiceError | None:
        """Why this principal's token is no longer honoured, or None. Raises Redis errors."""
        raw = await self.redis.hmget(mark_key(principal.id), ["v", "s"])
        version, suspended = parse_mark(raw[0], raw[1])
        return refusal(version, suspended, principal.token_version)

    async def check(self, principal: Principal, *, fail_closed: bool) -> None:
        """Raise the principal's refusal; when Redis fails, raise 503 or (fail open) log."""
        try:
            error = await self.refusal_for(principal)
        except Exception as exc:  # Redis down or slow: the policy decides
            if fail_closed:
                raise AccessCheckUnavailable() from exc
            log.warning("access marks unavailable (%s); not checked", type(exc).__name__)
            return
        if error is not None:
            raise error

    def subscribe(self, bus: EventBus) -> None:
        """Keep the marks from identity's events on `bus` (before `bus.start()`)."""
        from krika_common.events import UserReinstated, UserRolesChanged, UserSuspended

        async def suspended(envelope: Envelope) -> None:
            event = UserSuspended.from_envelope(envelope)
            await self.record(event.user_id, event.token_version, suspended=True)

        async def reinstated(envelope: Envelope) -> None:
            event = UserReinstated.from_envelope(envelope)
            await self.record(event.user_id, event.token_version, suspended=False)

        async def roles_changed(envelope: Envelope) -> None:
            event = UserRolesChanged.from_envelope(envelope)
            await self.record(event.user_id, event.token_version, suspended=event.suspended)

        bus.subscribe(UserSuspended.event_type, suspended)
        bus.subscribe(UserReinstated.event_type, reinstated)
        bus.subscribe(UserRolesChanged.event_type, roles_changed)


async def follow_marks(
    redis_url: str,
    users: Callable[[], Collection[str]],
    changed: Callable[[str, int | None, bool], Awaitable[None]],
    *,
    retry: float = 1.0,
) -> None:
    """Call `changed(user_id, version, suspended)` as the marks of the users that `users()`
    names change, until cancelled - for a process holding live connections (the gateway's
    WebSockets, chat's Socket.IO), which closes those the mark no longer honours (`refusal`).

    A pub/sub connection of its own. After every (re)subscription the marks of every user in
    `users()` are read once, so a change announced while the process was not listening still
    reaches it; a user who is not in `users()` is ignored.
    """
    redis = Redis.from_url(redis_url, health_check_interval=30)

    async def check(user_id: str) -> None:
        raw = await redis.hmget(mark_key(user_id), ["v", "s"])
        await changed(user_id, *parse_mark(raw[0], raw[1]))

    try:
        while True:
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    for user_id in list(users()):
                        await check(user_id)
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes) and (user := data.decode()) in users():
                            await check(user)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("access-mark channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(retry)
    finally:
        await redis.aclose()
