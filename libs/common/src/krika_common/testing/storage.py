"""Object storage in tests: a real S3-protocol server (moto in server mode) and stores on it.

`s3_endpoint` is the server's URL for the whole run; `s3_storage` is a `Storage` on a fresh
bucket of it, `local_storage` one on a fresh directory (links signed with a test secret).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from krika_common.storage import Storage

LINK_SECRET = b"test-link-secret-test-link-secret!"


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
