"""Events the gateway consumes (queue `gateway.events`).

identity.user_suspended -> the user's access tokens issued up to the suspension are refused
(403 `account_suspended`) until the longest access-token lifetime has passed, although they
are still valid JWTs. The handler is idempotent (a later suspension wins) and needs no inbox.

The broker is not a readiness dependency of the gateway: routing and auth do not need it, and
a RabbitMQ outage must not take the whole API down. The bus connects in the background and
reconnects by itself; its state shows in the logs and the bus's metrics, not in /readyz.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from gateway.ratelimit import suspend_user
from krika_common.events import Envelope, EventBus, UserSuspended

log = logging.getLogger("gateway.events")


def subscribe_suspensions(bus: EventBus, redis: Redis, ttl: int) -> None:
    async def on_user_suspended(envelope: Envelope) -> None:
        event = UserSuspended.from_envelope(envelope)
        await suspend_user(redis, str(event.user_id), event.suspended_at.timestamp(), ttl)
        log.info("user %s suspended: refusing their current tokens", event.user_id)

    bus.subscribe(UserSuspended.event_type, on_user_suspended)


async def run_bus(bus: EventBus) -> None:
    try:
        await bus.connect()
        await bus.start()
    except Exception:
        log.exception("event bus did not start: suspensions are not enforced by the gateway")
        raise
