"""Bounded turns for expensive work (password hashing, image decoding): memory stays bounded.

At most `concurrency` holders at once; at most `queue` callers wait for a turn, each at most
`wait` seconds; anyone else is refused at once with `busy()` (a 503 with Retry-After) rather
than queued without end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from krika_common.errors import ServiceError


class Turns:
    def __init__(
        self,
        concurrency: int,
        *,
        queue: int,
        wait: float,
        busy: Callable[[], ServiceError],
    ) -> None:
        self.concurrency = concurrency
        self._turns = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self._max_waiting = queue
        self._max_wait = wait
        self._busy = busy

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a turn for the block; raises `busy()` when none comes in time."""
        if self._turns.locked() and self._waiting >= self._max_waiting:
            raise self._busy()
        self._waiting += 1
        try:
            await asyncio.wait_for(self._turns.acquire(), self._max_wait)
        except TimeoutError:
            raise self._busy() from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._turns.release()
