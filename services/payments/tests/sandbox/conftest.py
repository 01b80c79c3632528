"""The sandbox under test runs as a real process (`running_sandbox`), shared by the session;
each test gets its own webhook receiver and no leftover rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from krika_common.testing.http import serving
from payments.sandbox.testing import Sandbox, running_sandbox

from .receiver import Receiver


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox() as running:
        yield running


@pytest_asyncio.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """httpx on the sandbox with the secret key; the rules of earlier tests cleared."""
    await sandbox.clear_rules()
    async with sandbox.client(timeout=10.0) as http:
        yield http


@pytest_asyncio.fixture
async def receiver(sandbox: Sandbox) -> AsyncIterator[Receiver]:
    """A webhook receiver on a real port, where the sandbox sends webhooks."""
    hooks = Receiver()
    async with serving(hooks.app()) as base_url:
        hooks.url = f"{base_url}/hooks/paystack"
        await sandbox.set_webhook_url(hooks.url)
        yield hooks
