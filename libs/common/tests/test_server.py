"""The limits every Krika HTTP server applies (krika_common.server), tried on real sockets as a
hostile client would: huge and numerous headers, idle and slow connections, slow and huge
bodies, more requests or connections than allowed, garbage instead of HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from yarl import URL

from krika_common.config import HttpLimits, KrikaSettings
from krika_common.testing.http import serving
from krika_common.web import install_http

LIMITS = HttpLimits(
    max_header_bytes=4096,
    max_headers=20,
    header_timeout=0.5,
    body_window=0.5,
    body_min_rate=1000,
    max_body_bytes=10_000,
    body_limits={"/uploads": 100_000},
    max_concurrency=4,
    max_connections=8,
)


def make_app(gate: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/uploads")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/wait")
    async def wait() -> dict[str, bool]:
        await asyncio.wait_for(gate.wait(), 10)
        return {"ok": True}

    install_http(app, KrikaSettings(service_name="limits", http=LIMITS))
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    gate = asyncio.Event()
    async with serving(make_app(gate), LIMITS) as url:
        yield url, gate
    gate.set()


async def raw(url: str, data: bytes, *, wait: float = 5.0) -> tuple[int, dict[str, object], bytes]:
    """Send raw bytes; the status, JSON body (if any) and everything the server sent."""
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(data)
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()
    return parse(received)


def parse(received: bytes) -> tuple[int, dict[str, object], bytes]:
    if not received:
        return 0, {}, received
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, (json.loads(body) if body.startswith(b"{") else {}), received


async def test_a_request_head_over_the_byte_limit_is_431(
    server: tuple[str, asyncio.Event],
) -> None:
    url, _ = server
    big = b"GET /wait HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    status, body, received = await raw(url, big)
    assert status == 431
    assert body["error"] == "headers_too_large"
    assert b"connection: close" in received.lower()


async def test_a_never_ending_header_is_refused_before_its_end(
    server: tuple[str, asyncio.Event],
) -> None:
    """Half a megabyte of one header value, never finished: the server does not wait for (and
    buffer) the rest, it answers 431 once the head passes the limit plus one socket read."""
    url, _ = server
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with contextlib.suppress(ConnectionError):
        for _ in range(8):
            writer.write(b"a" * 65536)
            await writer.drain()
    status, body, _ = parse(await asyncio.wait_for(reader.read(), 2))
    writer.close()
    assert status == 431
    assert body["error"] == "headers_too_large"


async def test_too_many_headers_is_431(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    status, body, _ = await raw(url, b"GET /wait HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status == 431
    assert body["error"] == "headers_too_large"


async def test_an_idle_connection_is_closed(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server
    started = time.monotonic()
    _, _, received = await raw(url, b"", wait=5)
    assert received == b""  # closed without a word: nothing was asked
    assert time.monotonic() - started < 4


async def test_a_slow_head_is_408(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server
    status, body, _ = await raw(url, b"GET /wait HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=5)
    assert status == 408
    assert body["error"] == "request_timeout"


async def test_a_trickling_body_is_408(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    received = b""
    for _ in range(40):  # 10 bytes every 0.1 s: 100 B/s against a 1000 B/s minimum
        try:
            writer.write(b"x" * 10)
            await writer.drain()
        except ConnectionError:
            break
        try:
            received += await asyncio.wait_for(reader.read(4096), 0.1)
        except TimeoutError:
            continue
        if received:
            break
    writer.close()
    status, body, _ = parse(received)
    assert status == 408
    assert body["error"] == "request_timeout"


async def test_a_body_over_the_limit_is_413_before_it_is_read(
    server: tuple[str, asyncio.Event],
) -> None:
    url, _ = server
    status, body, _ = await raw(
        url, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10001\r\n\r\n"
    )
    assert status == 413
    assert body["error"] == "payload_too_large"
    async with httpx.AsyncClient(base_url=url) as client:
        fits = await client.post("/echo", content=b"x" * 10_000)
        assert fits.json() == {"size": 10_000}
        upload = await client.post("/uploads", content=b"x" * 60_000)
        assert upload.json() == {"size": 60_000}
        too_big = await client.post("/uploads", content=b"x" * 100_001)
        assert too_big.status_code == 413


async def test_a_chunked_body_is_cut_off_at_the_limit(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 1000

    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/echo", content=chunks())
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"


async def test_beyond_the_concurrency_limit_is_503_overloaded(
    server: tuple[str, asyncio.Event],
) -> None:
    url, gate = server
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        waiting = [asyncio.create_task(client.get("/wait")) for _ in range(4)]
        await asyncio.sleep(0.3)
        refused = await client.get("/wait")
        assert refused.status_code == 503
        assert refused.json()["error"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200] * 4


async def test_beyond_the_connection_limit_a_connection_is_closed(
    server: tuple[str, asyncio.Event],
) -> None:
    url, _ = server
    target = URL(url)
    held = [await asyncio.open_connection(target.host, target.port) for _ in range(8)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 2) == b""
    for _, w in held:
        w.close()


async def test_garbage_is_a_json_400(server: tuple[str, asyncio.Event]) -> None:
    url, _ = server
    status, body, _ = await raw(url, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert status == 400
    assert body["error"] == "bad_request"
