"""Real RS256 keys and tokens for tests (never a mock of the verifier)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from krika_common.auth import StaticKeys, TokenVerifier

TEST_ISSUER = "krika-identity"
TEST_AUDIENCE = "krika"


class TestKeys:
    """A signing key (plus a second, unpublished one for 'unknown kid' cases)."""

    __test__ = False

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.stranger = RSAKey.generate_key(2048, auto_kid=True)

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.key]).as_dict(private=False))

    def verifier(self, issuer: str = TEST_ISSUER, audience: str = TEST_AUDIENCE) -> TokenVerifier:
        return TokenVerifier(StaticKeys(KeySet([self.key])), issuer=issuer, audience=audience)

    def mint(
        self,
        sub: uuid.UUID | str | None = None,
        roles: Iterable[str] = ("customer",),
        *,
        ttl: int = 900,
        key: RSAKey | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        signing_key = key or self.key
        payload: dict[str, Any] = {
            "sub": str(sub or uuid.uuid4()),
            "roles": list(roles),
            "iss": TEST_ISSUER,
            "aud": TEST_AUDIENCE,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        hdr = {"alg": "RS256", "kid": signing_key.kid, **(header or {})}
        return jwt.encode(hdr, payload, signing_key, algorithms=["RS256"])
