"""The signing keys: the active RS256 key signs; it and the previous keys are published (JWKS)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from identity.config import Settings
from krika_common.events.sealed import load_key, new_key

log = logging.getLogger(__name__)


class SigningKeys:
    def __init__(self, active: RSAKey, previous: list[RSAKey]) -> None:
        self.active = active
        self.public = KeySet([active, *previous])
        self._jwks = self.public.as_dict(private=False)

    @staticmethod
    def _load(path: Path) -> RSAKey:
        key = RSAKey.import_key(path.read_bytes())
        key.ensure_kid()  # kid = RFC 7638 thumbprint: stable, nothing to configure
        return key

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        if settings.signing_key_file is None:
            if settings.environment == "production":
                raise RuntimeError("IDENTITY_SIGNING_KEY_FILE is required in production")
            log.warning("no IDENTITY_SIGNING_KEY_FILE: using an ephemeral development key")
            active = RSAKey.generate_key(2048, auto_kid=True)
        else:
            active = cls._load(settings.signing_key_file)
        return cls(active, [cls._load(p) for p in settings.previous_key_files])

    def jwks(self) -> dict[str, Any]:
        return dict(self._jwks)

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self.active.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.active, algorithms=["RS256"])


def link_key(settings: Settings) -> ECKey:
    """notify's link key, which seals the one-time tokens in identity's events."""
    if settings.link_key_file is not None:
        return load_key(settings.link_key_file)
    if settings.environment == "production":
        raise RuntimeError("IDENTITY_LINK_KEY_FILE is required in production")
    log.warning("no IDENTITY_LINK_KEY_FILE: one-time links are sealed with an ephemeral key")
    return new_key()
