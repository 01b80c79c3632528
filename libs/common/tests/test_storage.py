"""Object storage on both backends: a local directory and a real S3-protocol server (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from krika_common.errors import NotFound, ServiceError
from krika_common.storage import (
    DOCUMENTS,
    IMAGES,
    EmptyFile,
    FileTooLarge,
    ImageTooLarge,
    InvalidFile,
    LinkInvalid,
    Storage,
    UnsupportedFileType,
    UploadKind,
)
from krika_common.testing.storage import image_bytes, jpeg_with_gps, png_bomb, stored_keys


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    store: Storage = request.getfixturevalue(f"{request.param}_storage")
    return store


async def test_an_image_is_stored_without_its_exif_and_with_its_hash(storage: Storage) -> None:
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)  # the GPS is there

    stored = await storage.put(original, IMAGES, prefix="gallery")

    content, content_type = await storage.get(stored.key)
    assert content_type == stored.content_type == "image/jpeg"
    assert stored.key.startswith("gallery/")
    assert stored.key.endswith(".jpg")
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.size == len(content)
    image = Image.open(io.BytesIO(content))
    assert image.size == (64, 48)
    assert dict(image.getexif()) == {}
    assert "exif" not in image.info
    assert b"PhoneMaker" not in content
    assert stored_keys(storage) == [stored.key]


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("WEBP", "image/webp")])
async def test_png_and_webp_are_accepted(storage: Storage, fmt: str, content_type: str) -> None:
    stored = await storage.put(image_bytes(fmt), IMAGES, prefix="gallery")
    assert stored.content_type == content_type


async def test_a_pdf_is_a_document_but_not_an_image(storage: Storage) -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    stored = await storage.put(pdf, DOCUMENTS, prefix="kyc")
    assert (await storage.get(stored.key)) == (pdf, "application/pdf")
    with pytest.raises(UnsupportedFileType):
        await storage.put(pdf, IMAGES, prefix="gallery")


BAD_UPLOADS: list[tuple[str, bytes, UploadKind, type[ServiceError]]] = [
    ("empty", b"", IMAGES, EmptyFile),
    (
        "too big",
        image_bytes("PNG") + b"\0" * 100,
        UploadKind("tiny", 100, IMAGES.types),
        FileTooLarge,
    ),
    ("text named like an image", b"not an image at all", IMAGES, UnsupportedFileType),
    ("gif", image_bytes("GIF"), IMAGES, UnsupportedFileType),
    ("html pretending", b"<html><script>alert(1)</script>", DOCUMENTS, UnsupportedFileType),
    ("truncated jpeg", jpeg_with_gps()[:200], IMAGES, InvalidFile),
    ("jpeg magic, garbage after", b"\xff\xd8\xff" + b"\x00" * 500, IMAGES, InvalidFile),
    ("truncated pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\n", DOCUMENTS, InvalidFile),
    ("decompression bomb", png_bomb(), IMAGES, ImageTooLarge),
    (
        "over the pixel budget",
        image_bytes("PNG", (300, 300)),
        UploadKind("small", 10**6, IMAGES.types, 10_000),
        ImageTooLarge,
    ),
]


@pytest.mark.parametrize(
    ("data", "kind", "error"), [case[1:] for case in BAD_UPLOADS], ids=[c[0] for c in BAD_UPLOADS]
)
async def test_a_bad_upload_is_refused_and_nothing_is_stored(
    storage: Storage, data: bytes, kind: UploadKind, error: type[ServiceError]
) -> None:
    with pytest.raises(error) as refused:
        await storage.put(data, kind, prefix="gallery")
    assert refused.value.status in (413, 415, 422)
    assert stored_keys(storage) == []


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "gallery/../../etc/passwd", "/etc/passwd", "gallery/x.jpg", ""]
)
async def test_a_key_that_was_not_generated_here_is_never_read(storage: Storage, key: str) -> None:
    with pytest.raises(NotFound):
        await storage.get(key)
    with pytest.raises(NotFound):
        await storage.signed_url(key, timedelta(minutes=1))


async def test_a_prefix_cannot_climb_out(storage: Storage) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await storage.put(image_bytes("PNG"), IMAGES, prefix="../up")


async def test_a_local_link_opens_the_file_until_it_expires_or_is_altered(
    local_storage: Storage,
) -> None:
    stored = await local_storage.put(image_bytes("PNG"), DOCUMENTS, prefix="kyc")
    url = await local_storage.signed_url(stored.key, timedelta(minutes=5))
    parts = urlsplit(url)
    assert parts.path == f"/files/{stored.key}"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}

    content, content_type = await local_storage.open_link(
        stored.key, query["expires"], query["sig"]
    )
    assert content_type == "image/png"
    assert content

    other = await local_storage.put(image_bytes("PNG"), DOCUMENTS, prefix="kyc")
    tampered = [
        (
            stored.key,
            query["expires"],
            query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1"),
        ),
        (stored.key, str(int(query["expires"]) + 3600), query["sig"]),
        (other.key, query["expires"], query["sig"]),
        (stored.key, "", query["sig"]),
        (stored.key, "9" * 40, query["sig"]),
    ]
    for key, expires, signature in tampered:
        with pytest.raises(LinkInvalid):
            await local_storage.open_link(key, expires, signature)

    expired = local_storage.signer.url(stored.key, timedelta(seconds=-1))  # type: ignore[union-attr]
    old = {k: v[0] for k, v in parse_qs(urlsplit(expired).query).items()}
    assert int(old["expires"]) < time.time()
    with pytest.raises(LinkInvalid):
        await local_storage.open_link(stored.key, old["expires"], old["sig"])


async def test_an_s3_link_is_presigned_and_short_lived(s3_storage: Storage) -> None:
    stored = await s3_storage.put(image_bytes("PNG"), IMAGES, prefix="gallery")

    url = await s3_storage.signed_url(stored.key, timedelta(days=7))

    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["3600"]  # capped at an hour
    assert "X-Amz-Signature" in query
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == stored.sha256


async def test_delete_removes_the_file(storage: Storage) -> None:
    stored = await storage.put(image_bytes("PNG"), IMAGES, prefix="gallery")
    await storage.delete(stored.key)
    with pytest.raises(NotFound):
        await storage.get(stored.key)


async def test_uploads_beyond_the_decode_budget_get_a_503_and_store_nothing(
    local_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from krika_common import storage as storage_module
    from krika_common.storage import UploadsBusy
    from krika_common.turns import Turns

    release = threading.Event()
    real_prepare = storage_module.prepare

    def slow_prepare(data: bytes, kind: UploadKind) -> tuple[bytes, str]:
        release.wait(5)
        return real_prepare(data, kind)

    monkeypatch.setattr(storage_module, "prepare", slow_prepare)
    local_storage.decodes = Turns(1, queue=1, wait=0.2, busy=UploadsBusy)
    png = image_bytes("PNG")
    first = asyncio.create_task(local_storage.put(png, IMAGES, prefix="gallery"))
    waiting = asyncio.create_task(local_storage.put(png, IMAGES, prefix="gallery"))
    await asyncio.sleep(0.05)

    with pytest.raises(UploadsBusy) as refused:  # one decoding, one waiting: no room
        await local_storage.put(png, IMAGES, prefix="gallery")
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "1"}
    with pytest.raises(UploadsBusy):  # the waiting one gave up after 0.2 s
        await waiting
    release.set()
    stored = await first
    assert stored_keys(local_storage) == [stored.key]
