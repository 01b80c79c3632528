"""What chat does with the events it consumes (queue `chat.events`, in `chat.worker`).

chat keeps no PostgreSQL inbox: each handler is idempotent by itself. A user and an order's
conversation are inserted once (unique keys); a push (`order_status`, `notification`) is
claimed in Redis by event id before it is emitted - a redelivery finds the claim and pushes
nothing, and a push that fails gives its claim back so the retry can send it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from redis.asyncio import Redis

from chat import service
from chat.hub import user_room
from krika_common.events import (
    Envelope,
    EventBus,
    NotificationCreated,
    OrderPlaced,
    OrderStatusChanged,
    UserRegistered,
)

log = logging.getLogger(__name__)

PUSHED_PREFIX = "krika:chat:pushed:"


class Consumers:
    """The handlers, with what they push through: `emitter`, a write-only Socket.IO manager on
    the hub's Redis channel (the emits reach every replica's connections)."""

    def __init__(
        self, redis: Redis, emitter: socketio.AsyncRedisManager, dedupe_seconds: int
    ) -> None:
        self.redis = redis
        self.emitter = emitter
        self.dedupe_seconds = dedupe_seconds

    def subscribe(self, bus: EventBus) -> None:
        handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            UserRegistered.event_type: self.user_registered,
            OrderPlaced.event_type: self.order_placed,
            OrderStatusChanged.event_type: self.order_status_changed,
            NotificationCreated.event_type: self.notification_created,
        }
        for event_type, handler in handlers.items():
            bus.subscribe(event_type, handler)

    async def user_registered(self, envelope: Envelope) -> None:
        event = UserRegistered.from_envelope(envelope)
        await service.register_user(str(event.user_id), event.roles)

    async def order_placed(self, envelope: Envelope) -> None:
        event = OrderPlaced.from_envelope(envelope)
        await service.open_order_conversation(
            str(event.order_id), str(event.customer_id), str(event.provider_id)
        )

    async def order_status_changed(self, envelope: Envelope) -> None:
        event = OrderStatusChanged.from_envelope(envelope)
        push = {
            "order_id": str(event.order_id),
            "from_status": event.from_status,
            "to_status": event.to_status,
            "changed_at": event.changed_at.isoformat(),
        }
        users = {str(event.customer_id), str(event.provider_id)}
        await self._push_once(envelope, "order_status", push, users)

    async def notification_created(self, envelope: Envelope) -> None:
        event = NotificationCreated.from_envelope(envelope)
        push = {
            "id": str(event.notification_id),
            "kind": event.kind,
            "title": event.title,
            "body": event.body,
            "data": event.data,
            "created_at": event.created_at.isoformat(),
        }
        await self._push_once(envelope, "notification", push, {str(event.user_id)})

    async def _push_once(
        self, envelope: Envelope, name: str, data: dict[str, Any], users: set[str]
    ) -> None:
        key = f"{PUSHED_PREFIX}{envelope.id}"
        if not await self.redis.set(key, b"1", nx=True, ex=self.dedupe_seconds):
            log.info("push of %s %s already sent", envelope.type, envelope.id)
            return
        try:
            await self.emitter.emit(
                name, data, room=[user_room(u) for u in sorted(users)], namespace="/"
            )
        except BaseException:
            await self.redis.delete(key)
            raise
