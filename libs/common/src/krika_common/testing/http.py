"""Apps in tests: in memory (`app_client`) or on real sockets with Krika's HTTP limits
(`serving`), and real RS256 tokens (`test_keys`, `mint_token`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from krika_common.config import HttpLimits
from krika_common.server import free_port, uvicorn_options
from krika_common.testing.jwt import TestKeys


@pytest.fixture(scope="session")
def test_keys() -> TestKeys:
    return TestKeys()


@pytest.fixture
def mint_token(test_keys: TestKeys) -> Callable[..., str]:
    return test_keys.mint


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI, base_url: str = "http://testserver", **kw: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the ASGI app, with the app's lifespan running around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, **kw) as client:
            yield client


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, limits: HttpLimits | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app (real sockets) on a free local port, as `krika_common.server.serve`
    would (same protocol and limits); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, **uvicorn_options(limits or HttpLimits()))
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
