"""A Socket.IO peer for the tests: a real python-socketio client (WebSocket transport only) that
records every event it receives, and two chat replicas with a gateway in front of each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from fastapi import FastAPI

from chat.hub import Hub
from krika_common.testing import eventually

from .conftest import replica
from .factories import User

TIMEOUT = 5.0


class Peer:
    """One connection of `user`: every event received, in order."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.disconnected = asyncio.Event()

        async def any_event(event: str, data: Any = None) -> None:
            self.events.append((event, data))

        async def disconnected(*_: Any) -> None:
            self.disconnected.set()

        self.sio.on("*", any_event)
        self.sio.on("disconnect", disconnected)

    async def connect(self, url: str, *, via: str = "query") -> None:
        if via == "query":
            await self.sio.connect(
                f"{url}?access_token={self.user.token}",
                transports=["websocket"],
                socketio_path="socket.io",
                wait_timeout=TIMEOUT,
            )
        else:
            await self.sio.connect(
                url,
                headers=self.user.auth,
                transports=["websocket"],
                socketio_path="socket.io",
                wait_timeout=TIMEOUT,
            )

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def expect(
        self, event: str, where: Callable[[Any], bool] = lambda _: True, within: float = TIMEOUT
    ) -> Any:
        """The first `event` matching `where`, waiting for it."""

        def found() -> bool:
            return any(where(d) for d in self.received(event))

        await eventually(found, within=within, what=f"{self.user.id} receiving {event}")
        return next(d for d in self.received(event) if where(d))

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=TIMEOUT)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


@contextlib.asynccontextmanager
async def peers(*users: User) -> AsyncIterator[list[Peer]]:
    made = [Peer(u) for u in users]
    try:
        yield made
    finally:
        for peer in made:
            await peer.close()


@dataclass
class Replica:
    chat_url: str  # the replica itself
    url: str  # the gateway in front of it
    hub: Hub


@contextlib.asynccontextmanager
async def two_replicas(
    make_app: Callable[..., FastAPI], gateway_in_front: Callable[..., Any], **overrides: Any
) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two chat replicas (one Redis channel), each behind a gateway of its own."""
    async with (
        replica(make_app(**overrides)) as (chat1, hub1),
        replica(make_app(**overrides)) as (chat2, hub2),
        gateway_in_front(chat1) as gw1,
        gateway_in_front(chat2) as gw2,
    ):
        yield Replica(chat1, gw1, hub1), Replica(chat2, gw2, hub2)
