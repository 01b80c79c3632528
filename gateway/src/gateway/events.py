"""Events the gateway consumes (queue `gateway.events`): identity's access changes.

identity.user_suspended, identity.user_reinstated, identity.user_roles_changed -> the user's
access mark in Redis (krika_common.access): the tokens it no longer honours are refused (403
`account_suspended`, 401 `token_revoked`) until they expire, and the mark's announcement makes
every replica close the user's live WebSockets (gateway.websocket). The handlers are
idempotent (a mark only moves forward) and need no inbox.

The broker is not a readiness dependency of the gateway: routing and auth do not need it, and
a RabbitMQ outage must not take the whole API down. The bus connects in the background and
reconnects by itself; its state shows in the logs and the bus's metrics, not in /readyz.
"""

from __future__ import annotations

import logging

from krika_common.events import EventBus

log = logging.getLogger("gateway.events")


async def run_bus(bus: EventBus) -> None:
    try:
        await bus.connect()
        await bus.start()
    except Exception:
        log.exception("event bus did not start: access changes are not enforced by the gateway")
        raise
