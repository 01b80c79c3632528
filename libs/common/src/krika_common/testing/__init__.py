"""Test support shared by every service. The pytest plugin (`krika_common.testing.plugin`,
loaded by its entry point) registers the fixtures of `servers`, `databases`, `broker` and
`http`; `eventually` polls a condition."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable


async def eventually(
    condition: Callable[[], object],
    *,
    within: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll `condition()` (sync or async) until truthy; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)
