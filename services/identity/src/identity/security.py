"""Password hashing (argon2id) with bounded memory, and opaque token generation/hashing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from prometheus_client import Counter

from identity.config import Settings
from krika_common.errors import ServiceUnavailable
from krika_common.turns import Turns

T = TypeVar("T")

HASHES_REFUSED = Counter(
    "identity_password_hashes_refused_total", "Sign-ins refused because hashing was saturated"
)


class PasswordHashingBusy(ServiceUnavailable):
    code = "busy"
    message = "Too many sign-ins at once; retry shortly"


def _refused() -> PasswordHashingBusy:
    HASHES_REFUSED.inc()
    return PasswordHashingBusy()


COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password12", "password123", "passw0rd", "qwerty123",
        "qwertyuiop", "1234567890", "12345678910", "iloveyou12", "letmein123", "welcome123",
        "admin12345", "abc1234567", "football12", "monkey1234", "changeme12", "krika12345",
    }
)  # fmt: skip


class Passwords:
    """argon2id off the event loop, at most `password_hash_concurrency` hashes at a time.

    Each hash takes `argon2_memory_cost` KiB, so the number running at once is what bounds
    identity's memory: they run on a pool of that many threads. A bounded number of callers
    wait for a turn, each for a bounded time; the others are refused at once (503 `busy`, with
    Retry-After) rather than queued without end.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )
        concurrency = settings.password_hash_concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._turns = Turns(
            concurrency,
            queue=settings.password_hash_queue,
            wait=settings.password_hash_wait,
            busy=_refused,
        )
        # Verified against when the account does not exist, so timing does not tell.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    async def _run(self, work: Callable[[], T]) -> T:
        async with self._turns.turn():
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password)
            except (VerificationError, InvalidHashError):
                return False

        ok = await self._run(check)
        return ok and password_hash is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def password_problem(password: str, email: str, full_name: str) -> str | None:
    """Why a password is too weak, or None."""
    lowered = password.lower()
    if len(password) < 10:
        return "Use at least 10 characters"
    if lowered in COMMON_PASSWORDS or len(set(password)) < 5:
        return "This password is too common"
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if classes < 2:
        return "Mix letters with digits or symbols"
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        return "The password must not contain your e-mail"
    if any(len(part) >= 4 and part.lower() in lowered for part in full_name.split()):
        return "The password must not contain your name"
    return None


class TokenHasher:
    """Opaque tokens are random; only their HMAC-SHA256 (keyed by the pepper) is stored."""

    def __init__(self, pepper: str) -> None:
        self._key = pepper.encode()

    @staticmethod
    def new() -> str:
        return secrets.token_urlsafe(32)

    def digest(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode(), hashlib.sha256).digest()

    def successor(self, token: str) -> str:
        """The refresh token that replaces `token` when it is rotated (same on every call)."""
        mac = hmac.new(self._key, b"successor:" + token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
