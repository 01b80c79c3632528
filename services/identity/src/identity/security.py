"""Password hashing (argon2id) and opaque token generation/hashing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from identity.config import Settings

COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password12", "password123", "passw0rd", "qwerty123",
        "qwertyuiop", "1234567890", "12345678910", "iloveyou12", "letmein123", "welcome123",
        "admin12345", "abc1234567", "football12", "monkey1234", "changeme12", "krika12345",
    }
)  # fmt: skip


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the account does not exist, so timing does not tell.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        # argon2 is deliberately slow: keep it off the event loop.
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password)
            except (VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(check)
        return ok and password_hash is not None

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
