"""JWT verification (joserfc) against a JWKS, and the `CurrentUser` / `require_role` dependencies.

Every service verifies the access token again with this helper, even behind the gateway, and
(when the app has `state.access_marks`) checks it against the user's access mark
(krika_common.access): a suspension or a role change counts at once, not at the next refresh.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import Key, KeySet

from krika_common.access import (
    AccessCheckUnavailable,
    AccessMarks,
    AccountSuspended,
    TokenRevoked,
)
from krika_common.errors import BadRequest, Forbidden, Unauthorized, raises
from krika_common.telemetry import user_id_var

ALLOWED_ALGORITHMS = ("RS256",)


class InvalidToken(Unauthorized):
    code = "invalid_token"
    message = "The access token is invalid"


class TokenExpired(Unauthorized):
    code = "token_expired"
    message = "The access token has expired"


class AmbiguousCredentials(BadRequest):
    code = "ambiguous_credentials"
    message = "Send one Authorization header, not several"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the verified access token says."""

    id: uuid.UUID
    roles: frozenset[str]
    token_id: str
    expires_at: int
    claims: dict[str, Any] = field(repr=False, compare=False)
    # identity's per-user counter (`ver` claim), bumped when access changes; 0 when absent.
    token_version: int = 0
    # The `kid` of the key that signed the token.
    key_id: str = ""


class KeySource(Protocol):
    async def find(self, kid: str) -> Key | None: ...


class StaticKeys:
    """A fixed key set (identity verifies its own tokens without a network hop)."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = {k.kid: k for k in keys.keys if k.kid}

    async def find(self, kid: str) -> Key | None:
        return self._keys.get(kid)


class JWKSClient:
    """Caches the JWKS; an unknown `kid` triggers one refetch (at most one per cooldown)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        refetch_cooldown: float = 5.0,
        on_fetch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._http = http
        self._keys: dict[str, Key] = {}
        self._fetched_at = float("-inf")
        self._cooldown = refetch_cooldown
        self._lock = asyncio.Lock()
        self._on_fetch = on_fetch

    async def refresh(self) -> None:
        response = await self._http.get(self.url, timeout=5.0)
        response.raise_for_status()
        key_set = KeySet.import_key_set(response.json())
        self._keys = {k.kid: k for k in key_set.keys if k.kid}
        self._fetched_at = time.monotonic()
        if self._on_fetch is not None:
            await self._on_fetch()

    def kids(self) -> set[str]:
        """The key ids of the last fetched JWKS."""
        return set(self._keys)

    async def find(self, kid: str) -> Key | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._fetched_at >= self._cooldown:
                try:
                    await self.refresh()
                except (httpx.HTTPError, ValueError, JoseError):
                    return None
                key = self._keys.get(kid)
            return key


class TokenVerifier:
    """Checks signature (allow-listed algorithms only), `iss`, `aud`, `exp`, `sub`, `roles`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = ALLOWED_ALGORITHMS,
        leeway: int = 10,
    ) -> None:
        self._keys = keys
        self._algorithms = list(algorithms)
        self._claims = jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken("Malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise InvalidToken("Token algorithm not allowed")
        if not isinstance(kid, str):
            raise InvalidToken("Token has no key id")
        key = await self._keys.find(kid)
        if key is None:
            raise InvalidToken("Unknown signing key")
        try:
            decoded = jwt.decode(token, key, algorithms=self._algorithms)
            self._claims.validate(decoded.claims)
        except ExpiredTokenError as exc:
            raise TokenExpired() from exc
        except (JoseError, ValueError) as exc:
            raise InvalidToken() from exc
        claims = decoded.claims
        roles = claims.get("roles", [])
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise InvalidToken("Invalid subject") from exc
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("Invalid roles claim")
        version = claims.get("ver", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidToken("Invalid version claim")
        return Principal(
            id=user_id,
            roles=frozenset(roles),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            claims=dict(claims),
            token_version=version,
            key_id=kid,
        )


def parse_bearer(value: bytes | str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_token(request: Request) -> str | None:
    """The request's bearer token; more than one Authorization header is refused (400): a proxy
    and a service could otherwise each read a different one."""
    found = [value for name, value in request.scope["headers"] if name == b"authorization"]
    if len(found) > 1:
        raise AmbiguousCredentials()
    return parse_bearer(found[0]) if found else None


# Only for OpenAPI (securitySchemes and each protected operation's `security`); the header is
# read by `bearer_token`, which refuses duplicates.
bearer_scheme = HTTPBearer(scheme_name="bearerAuth", bearerFormat="JWT", auto_error=False)


def _marks(request: Request) -> AccessMarks | None:
    marks: AccessMarks | None = getattr(request.app.state, "access_marks", None)
    return marks


@raises(AmbiguousCredentials, Unauthorized, InvalidToken, TokenExpired, TokenRevoked)
@raises(AccountSuspended)
async def current_user(request: Request, _: Annotated[object, Depends(bearer_scheme)]) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(token)
    if (marks := _marks(request)) is not None:
        await marks.check(principal, fail_closed=False)
    user_id_var.set(str(principal.id))  # the request's log lines carry the caller
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the caller must hold at least one of `roles`.

    Declare once per service: `Admin = Annotated[Principal, Depends(require_role("admin"))]`.
    The token's roles are re-checked against the access mark, failing closed (503) when it
    cannot be read. identity, which owns the truth, checks its database instead.
    """

    @raises(Forbidden, AccessCheckUnavailable)
    async def check(request: Request, user: CurrentUser) -> Principal:
        if not user.roles.intersection(roles):
            raise Forbidden(f"Requires role: {' or '.join(roles)}")
        if (marks := _marks(request)) is not None:
            await marks.check(user, fail_closed=True)
        return user

    return check
