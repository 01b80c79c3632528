"""Object storage: uploads checked before anything is stored, files behind short-lived links.

One API over obstore's stores: a local directory (`file:///var/lib/krika/catalog`, the default
for `make up` and tests) or S3 and S3-compatible servers (`s3://bucket`, with an endpoint for
MinIO and the like). A service:

    storage = Storage.from_settings(settings, link_base="/api/v1/catalog/files")
    stored = await storage.put(await upload.read(), IMAGES, prefix="gallery")  # 413/415/422
    url = await storage.signed_url(stored.key, timedelta(minutes=5))

Checks, in order, before a byte is written: not empty (422 `empty_file`), not over the kind's
size (413 `file_too_large`), the type sniffed from the content's magic bytes - never the file
name or the client's content type - on the kind's allow-list (415 `unsupported_file_type`).
Images are decoded under a pixel budget (a decompression bomb is 422 `image_too_large`; a
truncated or corrupt image 422 `invalid_file`) and re-encoded, which drops EXIF and every other
metadata (a selfie's GPS position) after applying its orientation. PDFs must be whole (header
and `%%EOF` trailer). The key is generated (`<prefix>/<32 hex>.<ext>`): no client path ever
reaches the store, and keys that do not have this shape are refused on every read.

Links: on S3, presigned GET URLs; on a local directory, `<link_base>/<key>?expires=&sig=` signed
with HMAC-SHA256, served by the owning service: a public route
`GET <link_base>/{folder}/{name}` answering
`link_response(*await storage.open_link(f"{folder}/{name}", expires, sig))`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import obstore
from obstore.store import LocalStore, S3Store
from PIL import Image, ImageOps
from starlette.responses import Response

from krika_common.config import DEV_PLACEHOLDER, StorageSettings
from krika_common.errors import BadRequest, NotFound, ServiceError, ServiceUnavailable
from krika_common.turns import Turns

JPEG, PNG, WEBP, PDF = "image/jpeg", "image/png", "image/webp", "application/pdf"
_EXTENSIONS = {JPEG: "jpg", PNG: "png", WEBP: "webp", PDF: "pdf"}
_TYPES = {ext: content_type for content_type, ext in _EXTENSIONS.items()}
_PIL_FORMATS = {JPEG: "JPEG", PNG: "PNG", WEBP: "WEBP"}
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[0-9a-f]{32}\.(jpg|png|webp|pdf)$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class EmptyFile(ServiceError):
    status = 422
    code = "empty_file"
    message = "The file is empty"


class FileTooLarge(ServiceError):
    status = 413
    code = "file_too_large"
    message = "The file is over the size allowed for it"


class UnsupportedFileType(ServiceError):
    status = 415
    code = "unsupported_file_type"
    message = "This type of file is not accepted here"


class InvalidFile(ServiceError):
    status = 422
    code = "invalid_file"
    message = "The file is damaged or not what its content says"


class ImageTooLarge(ServiceError):
    status = 422
    code = "image_too_large"
    message = "The image has more pixels than allowed"


class UploadsBusy(ServiceUnavailable):
    code = "busy"
    message = "Too many uploads being processed; retry shortly"


class LinkInvalid(ServiceError):
    status = 403
    code = "invalid_link"
    message = "This file link is invalid or has expired"


class MalformedUpload(BadRequest):
    """Never raised: documents what the common error handler answers for a multipart body that
    cannot be parsed (FastAPI's 400), so every upload route's OpenAPI lists it."""

    code = "bad_request"
    message = "The multipart body could not be parsed"


UPLOAD_ERRORS: tuple[type[ServiceError], ...] = (
    MalformedUpload,
    EmptyFile,
    FileTooLarge,
    UnsupportedFileType,
    InvalidFile,
    ImageTooLarge,
    UploadsBusy,
)


@dataclass(frozen=True)
class UploadKind:
    """What one kind of upload may be: size, types, and (images) a pixel budget."""

    name: str
    max_bytes: int
    types: frozenset[str]
    max_pixels: int = 40_000_000  # e.g. 8000 x 5000; a bomb declares far more


IMAGES = UploadKind("image", 10 * 1024 * 1024, frozenset({JPEG, PNG, WEBP}))
DOCUMENTS = UploadKind("document", 10 * 1024 * 1024, frozenset({JPEG, PNG, WEBP, PDF}))


@dataclass(frozen=True)
class StoredFile:
    key: str
    content_type: str
    size: int
    sha256: str


def sniff(data: bytes) -> str | None:
    """The content type the magic bytes say, among the ones we accept at all."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data.startswith(b"%PDF-"):
        return PDF
    return None


def prepare(data: bytes, kind: UploadKind) -> tuple[bytes, str]:
    """The bytes to store and their content type, or the 4xx that refuses the upload."""
    if not data:
        raise EmptyFile()
    if len(data) > kind.max_bytes:
        raise FileTooLarge(f"A {kind.name} may be at most {kind.max_bytes} bytes")
    content_type = sniff(data)
    if content_type is None or content_type not in kind.types:
        accepted = ", ".join(sorted(_EXTENSIONS[t] for t in kind.types))
        raise UnsupportedFileType(f"A {kind.name} must be one of: {accepted}")
    if content_type == PDF:
        if b"%%EOF" not in data[-1024:]:
            raise InvalidFile("The PDF is incomplete")
        return data, content_type
    return _reencode(data, content_type, kind), content_type


def _reencode(data: bytes, content_type: str, kind: UploadKind) -> bytes:
    """Decode under the pixel budget and encode again: the stored image carries no metadata."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; ours is the only limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format != _PIL_FORMATS[content_type]:
                    raise InvalidFile()
                width, height = image.size
                if width * height > kind.max_pixels:
                    raise ImageTooLarge(f"At most {kind.max_pixels} pixels")
                image.load()  # a truncated file fails here
                upright = ImageOps.exif_transpose(image)
                if upright.mode == "P":
                    upright = upright.convert("RGBA")  # keeps a palette's transparency
        clean = Image.new(upright.mode, upright.size)
        clean.paste(upright)  # pixels only: no info, EXIF, XMP or ICC text chunks
        out = io.BytesIO()
        options: dict[str, Any] = {"quality": 90} if content_type != PNG else {}
        clean.save(out, format=_PIL_FORMATS[content_type], **options)
        return out.getvalue()
    except ServiceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"At most {kind.max_pixels} pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "not an image"
        raise InvalidFile() from exc


class LinkSigner:
    """HMAC-SHA256 links for a store that cannot presign (a local directory)."""

    def __init__(self, secret: bytes, base: str) -> None:
        if len(secret) < 32:
            raise ValueError("the link secret needs at least 32 bytes")
        self._secret = secret
        self.base = base.rstrip("/")

    def _signature(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, key: str, expires_in: timedelta) -> str:
        expires = int(time.time() + expires_in.total_seconds())
        query = urlencode({"expires": expires, "sig": self._signature(key, expires)})
        return f"{self.base}/{key}?{query}"

    def verify(self, key: str, expires: str, signature: str) -> None:
        """Raises `LinkInvalid` unless the link was signed here for `key` and is still valid."""
        if not expires.isdigit() or len(expires) > 12:
            raise LinkInvalid()
        wanted = self._signature(key, int(expires))
        if not hmac.compare_digest(wanted, signature) or int(expires) < time.time():
            raise LinkInvalid()


def link_response(content: bytes, content_type: str) -> Response:
    """A file behind a signed link: shown inline, never sniffed into something else, never run
    as a page (a PDF or image cannot carry script into our origin), kept only by the browser."""
    return Response(
        content,
        media_type=content_type,
        headers={
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
            "Content-Disposition": "inline",
            "Referrer-Policy": "no-referrer",
        },
    )


class Storage:
    """Files of one service in one store (a bucket or a directory)."""

    MAX_LINK_LIFETIME: ClassVar[timedelta] = timedelta(hours=1)

    def __init__(
        self,
        store: LocalStore | S3Store,
        signer: LinkSigner | None = None,
        *,
        decodes: Turns | None = None,
    ) -> None:
        if isinstance(store, LocalStore) and signer is None:
            raise ValueError("a local store needs a LinkSigner for its links")
        self.store = store
        self.signer = signer
        # A decoded image takes up to 4 bytes per pixel of the budget (160 MB at 40 Mpx): two
        # at a time, a few waiting, the rest 503 `busy`.
        self.decodes = decodes or Turns(2, queue=8, wait=10.0, busy=UploadsBusy)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        link_secret: bytes | None = None,
        link_base: str = "",
        **s3_options: Any,
    ) -> Storage:
        """`file:///dir` (created if missing) or `s3://bucket` (`s3_options`: endpoint,
        region, access_key_id, secret_access_key, client_options...)."""
        parts = urlsplit(url)
        if parts.scheme == "file":
            store: LocalStore | S3Store = LocalStore(parts.path, mkdir=True)
            signer = LinkSigner(link_secret or b"", link_base)
            return cls(store, signer)
        if parts.scheme == "s3" and parts.netloc:
            return cls(S3Store(parts.netloc, **s3_options))
        raise ValueError(f"unsupported storage URL scheme: {parts.scheme!r}")

    @classmethod
    def from_settings(cls, settings: StorageSettings, *, link_base: str) -> Storage:
        """The service's store; `link_base` is the public path of its link route
        (e.g. "/api/v1/kyc/files"), used by a local directory's signed links."""
        secret = settings.file_link_secret.encode()
        if settings.file_link_secret == DEV_PLACEHOLDER:  # development only: refused elsewhere
            secret = hashlib.sha256(secret).digest()
        return cls.open(
            settings.storage_url,
            link_secret=secret,
            link_base=link_base,
            **settings.s3_options(),
        )

    async def put(self, data: bytes, kind: UploadKind, *, prefix: str) -> StoredFile:
        """Check `data` as a `kind` upload (413/415/422 before anything is written) and store
        it under a generated key in `prefix` (e.g. "kyc", "gallery")."""
        if not _PREFIX.match(prefix):
            raise ValueError(f"invalid key prefix {prefix!r}")
        # Decoding and encoding an image is CPU and memory: off the event loop, in turns.
        async with self.decodes.turn():
            content, content_type = await asyncio.to_thread(prepare, data, kind)
        key = f"{prefix}/{uuid.uuid4().hex}.{_EXTENSIONS[content_type]}"
        if isinstance(self.store, S3Store):  # a local directory keeps no attributes
            await obstore.put_async(
                self.store, key, content, attributes={"Content-Type": content_type}
            )
        else:
            await obstore.put_async(self.store, key, content)
        return StoredFile(key, content_type, len(content), hashlib.sha256(content).hexdigest())

    async def get(self, key: str) -> tuple[bytes, str]:
        """The file's bytes and content type; `NotFound` for a missing or malformed key."""
        content_type = self._content_type(key)
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async()), content_type
        except FileNotFoundError as exc:
            raise NotFound("No such file") from exc

    async def delete(self, key: str) -> None:
        self._content_type(key)
        await obstore.delete_async(self.store, key)

    async def signed_url(self, key: str, expires_in: timedelta) -> str:
        """A link that opens the file until `expires_in` from now (at most an hour)."""
        self._content_type(key)
        expires_in = min(expires_in, self.MAX_LINK_LIFETIME)
        if isinstance(self.store, S3Store):
            return await obstore.sign_async(self.store, "GET", key, expires_in)
        assert self.signer is not None  # required for a local store
        return self.signer.url(key, expires_in)

    async def open_link(self, key: str, expires: str, signature: str) -> tuple[bytes, str]:
        """What a local link route answers: the file, if the link is valid (else 403)."""
        if self.signer is None:
            raise NotFound("No such file")
        self._content_type(key)
        self.signer.verify(key, expires, signature)
        return await self.get(key)

    @staticmethod
    def _content_type(key: str) -> str:
        match = _KEY.match(key)
        if match is None:
            raise NotFound("No such file")
        return _TYPES[match.group(1)]
