"""identity: users, authentication and roles.

Owns: users (argon2id password hashes, roles, suspension), refresh tokens (opaque, hashed,
rotated; reuse revokes the family), e-mail verification and password-reset tokens (hashed,
single use, expiring), the RS256 signing keys and their JWKS at `/.well-known/jwks.json`.
Events out (through the outbox, published by `identity.worker`): identity.user_registered,
identity.email_verification_requested, identity.password_reset_requested (their tokens sealed
for notify), identity.user_suspended, identity.user_reinstated, identity.user_roles_changed
(each with the user's new `token_version`: see krika_common.access), identity.kyc_submitted,
identity.kyc_approved, identity.kyc_rejected. Events in: none.

KYC (identity.kyc): providers' identity documents in the service's store
(krika_common.storage), opened only through signed links at `/kyc/files/...`.

Run with `python -m identity` (krika_common.server: uvicorn with every limit explicit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from redis.asyncio import Redis
from starlette.types import Scope

from identity import kyc as kyc_use_cases
from identity.config import Settings
from identity.endpoints import auth, kyc, users
from identity.keys import SigningKeys, link_key
from identity.security import Passwords, TokenHasher
from identity.service import Identity
from identity.throttle import LoginThrottle
from krika_common.access import connect_redis
from krika_common.auth import StaticKeys, TokenVerifier
from krika_common.db import database_check, make_engine, make_sessionmaker
from krika_common.storage import Storage
from krika_common.telemetry import configure_logging, setup_tracing
from krika_common.web import install_http


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.service_name, settings.log_level)
    keys = SigningKeys.from_settings(settings)
    sealing_key = link_key(settings)
    storage = Storage.from_settings(settings, link_base=kyc_use_cases.LINK_BASE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        redis: Redis = connect_redis(settings)
        setup_tracing(settings.service_name, app, engine)
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.token_verifier = TokenVerifier(
            StaticKeys(keys.public), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        passwords = Passwords(settings)
        app.state.identity = Identity(
            settings=settings,
            keys=keys,
            passwords=passwords,
            tokens=TokenHasher(settings.token_pepper),
            throttle=LoginThrottle(redis, settings),
            link_key=sealing_key,
            storage=storage,
        )

        async def cache() -> None:
            await redis.ping()

        app.state.readiness.update(database=database_check(engine), redis=cache)
        try:
            yield
        finally:
            passwords.close()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Krika identity",
        version="1.0.0",
        summary="Users, authentication, roles, KYC",
        lifespan=lifespan,
    )
    app.include_router(auth)
    app.include_router(users)
    app.include_router(kyc)

    @app.get("/.well-known/jwks.json", tags=["auth"])
    async def jwks(response: Response) -> dict[str, Any]:
        """Public keys that verify Krika access tokens (active and recently rotated out)."""
        response.headers["Cache-Control"] = "public, max-age=300"
        return keys.jwks()

    def body_limit(scope: Scope) -> int:
        if scope["path"] == "/kyc/submissions":  # exactly: not its sub-routes
            return settings.kyc_body_limit
        return settings.http.body_limit(scope["path"])

    install_http(app, settings, body_limit=body_limit)
    return app
