"""The sandbox's clock: settles transfers and refunds when they are due and sends webhook
deliveries when they are due, retrying failed ones (started in the app's lifespan).

Everything it acts on is a row with a due time, so a restart picks up where it stopped.
Deliveries are sent concurrently (one slow receiver delays no other), each at most once at a
time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import sqlalchemy as sa

from . import service
from .config import SandboxSettings
from .store import Store, deliveries
from .webhooks import headers_for, retry_delay

log = logging.getLogger("payments.sandbox")

# The longest the loop sleeps without looking at the database (a change made by a request
# wakes it at once).
IDLE_POLL = 0.5


class Background:
    def __init__(self, settings: SandboxSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._client = httpx.AsyncClient(timeout=settings.webhook_timeout, follow_redirects=False)

    def wake(self) -> None:
        """Something became due (or a webhook URL was set): look now."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                next_due = await self._tick()
            except Exception:
                log.exception("paystack sandbox: background step failed")
                next_due = None
            wait = IDLE_POLL if next_due is None else next_due - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(max(wait, 0.005), IDLE_POLL))
            self._wake.clear()

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        await self._client.aclose()

    async def _tick(self) -> float | None:
        now = time.time()
        async with self.store.tx() as conn:
            await service.settle_transfers(conn, now)
            await service.settle_refunds(conn, now)
            next_settlement = await service.next_settlement(conn)
            url = await service.webhook_url(conn, self.settings.webhook_url)
            waiting = deliveries.c.status.in_(("pending", "held"))
            due = (
                await conn.execute(
                    sa.select(deliveries.c.id, deliveries.c.body)
                    .where(waiting, deliveries.c.next_attempt_at <= now)
                    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                )
            ).all()
            later = await conn.scalar(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    waiting, deliveries.c.next_attempt_at > now
                )
            )
        if url is not None:
            for delivery_id, body in due:
                if delivery_id not in self._in_flight:
                    task = asyncio.create_task(self._deliver(delivery_id, body, url))
                    self._in_flight[delivery_id] = task
                    task.add_done_callback(self._forget)
        times = [t for t in (next_settlement, later) if t is not None]
        return min(times) if times else None

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._in_flight.items()):
            if running is task:
                del self._in_flight[key]

    async def _deliver(self, delivery_id: int, body: str, url: str) -> None:
        payload = body.encode()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(
                url, content=payload, headers=headers_for(payload, self.settings.secret_key)
            )
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        delivered = status_code is not None and 200 <= status_code < 300
        now = time.time()
        async with self.store.tx() as conn:
            attempts = 1 + int(
                await conn.scalar(
                    sa.select(deliveries.c.attempts).where(deliveries.c.id == delivery_id)
                )
                or 0
            )
            values: dict[str, object] = {
                "attempts": attempts,
                "last_status_code": status_code,
                "last_error": error,
            }
            if delivered:
                values |= {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
            elif attempts >= self.settings.webhook_max_attempts:
                values |= {"status": "failed", "next_attempt_at": None}
            else:
                delay = retry_delay(
                    attempts,
                    self.settings.webhook_retry_base,
                    self.settings.webhook_retry_max_delay,
                )
                values |= {"status": "pending", "next_attempt_at": now + delay}
            await conn.execute(
                deliveries.update().where(deliveries.c.id == delivery_id).values(**values)
            )
        self.wake()
