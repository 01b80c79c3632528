"""Object storage in tests: a real S3-protocol server (moto in server mode) and stores on it.

`s3_endpoint` is the server's URL for the whole run; `s3_storage` is a `Storage` on a fresh
bucket of it, `local_storage` one on a fresh directory (links signed with a test secret).
Uploads to try them with: `image_bytes`, `jpeg_with_gps`, `png_bomb`, `PDF`; `stored_keys`
lists what a store holds (to prove a refused upload left nothing).
"""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import obstore
import pytest
from PIL import Image

from krika_common.storage import Storage

LINK_SECRET = b"test-link-secret-test-link-secret!"
# The smallest whole PDF the checks accept (header and %%EOF trailer).
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def stored_keys(storage: Storage) -> list[str]:
    return [meta["path"] for chunk in obstore.list(storage.store) for meta in chunk]


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (2.0, 17.0, 40.0)
    return image_bytes("JPEG", exif=exif)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small PNG declaring 900 million pixels (one compressed row, then nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_endpoint: str) -> Storage:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{s3_endpoint}/{bucket}").raise_for_status()
    return Storage.open(
        f"s3://{bucket}",
        endpoint=s3_endpoint,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",  # noqa: S106 - moto's
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


@pytest.fixture
def local_storage(tmp_path: Path) -> Storage:
    return Storage.open(f"file://{tmp_path / 'files'}", link_secret=LINK_SECRET, link_base="/files")
