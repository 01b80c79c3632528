"""Large bodies stream through in both directions, never buffered whole by the gateway.

Each test holds one side back until the other has seen the first bytes; a gateway that
buffered the whole body would deadlock there and the test would fail on its gate timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable

import httpx

from .upstreams import GATE_TIMEOUT, MIB, Upstreams, download_block

UPLOAD = 20 * MIB
CHUNK = 64 * 1024


async def test_large_upload_streams_to_the_upstream(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    digest = hashlib.sha256()
    gate_seen_midway = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal gate_seen_midway
        for i in range(UPLOAD // CHUNK):
            chunk = bytes([i % 251]) * CHUNK
            digest.update(chunk)
            yield chunk
            if i == (2 * MIB) // CHUNK:
                # The upstream must already be reading while most of the body is unsent.
                await asyncio.wait_for(upstreams.gates["upload_started"].wait(), GATE_TIMEOUT)
                gate_seen_midway = True

    response = await client.post(
        "/api/v1/orders/upload",
        content=body(),
        headers={"Authorization": f"Bearer {mint_token()}"},
    )
    assert response.status_code == 200, response.text
    assert gate_seen_midway
    assert response.json() == {"bytes": UPLOAD, "sha256": digest.hexdigest()}


async def test_large_upload_with_content_length(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
    response = await client.post(
        "/api/v1/orders/upload",
        content=payload,
        headers={"Authorization": f"Bearer {mint_token()}"},
    )
    assert response.json() == {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


async def test_large_download_streams_to_the_client(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    blocks = 20
    expected = hashlib.sha256(b"".join(download_block(i) for i in range(blocks))).hexdigest()
    digest = hashlib.sha256()
    size = 0
    async with client.stream(
        "GET",
        f"/api/v1/orders/download?blocks={blocks}",
        headers={"Authorization": f"Bearer {mint_token()}"},
    ) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            # Bytes arrive while the upstream is still held back: nothing buffered whole.
            upstreams.gates["download_continue"].set()
            digest.update(chunk)
            size += len(chunk)
    assert size == blocks * MIB
    assert digest.hexdigest() == expected


async def test_client_leaving_mid_upload_does_not_break_the_gateway(
    client: httpx.AsyncClient, mint_token: Callable[..., str]
) -> None:
    url = client.base_url
    assert url.host
    assert url.port
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        (
            "POST /api/v1/orders/upload HTTP/1.1\r\n"
            f"Host: {url.host}\r\nAuthorization: Bearer {mint_token()}\r\n"
            f"Content-Length: {10 * MIB}\r\n\r\n"
        ).encode()
        + b"x" * MIB
    )
    await writer.drain()
    writer.close()  # gone with 9 MiB unsent
    # The gateway goes on serving.
    response = await client.post(
        "/api/v1/orders/upload", content=b"abc", headers={"Authorization": f"Bearer {mint_token()}"}
    )
    assert response.json() == {"bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}


async def test_chunked_request_with_content_length_is_refused(
    client: httpx.AsyncClient, upstreams: Upstreams, mint_token: Callable[..., str]
) -> None:
    """Both framings at once (request smuggling): never forwarded."""
    url = client.base_url
    assert url.host
    assert url.port
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        (
            "POST /api/v1/orders/x HTTP/1.1\r\n"
            f"Host: {url.host}\r\nAuthorization: Bearer {mint_token()}\r\n"
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            "5\r\nhello\r\n0\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    assert status == 400
    assert upstreams.hits == []
