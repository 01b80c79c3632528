"""Identity use cases. They flush, never commit: the request's session commits at the edge."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from joserfc.jwk import ECKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from identity import repository
from identity.config import Settings
from identity.errors import (
    AccountSuspended,
    CannotModifySelf,
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    InvalidRefreshToken,
    RefreshTokenReused,
    UserNotFound,
    WeakPassword,
    WrongPassword,
)
from identity.keys import SigningKeys
from identity.models import OneTimeToken, RefreshToken, Role, TokenPurpose, User, UserStatus
from identity.schemas import TokenPair
from identity.security import PasswordHashingBusy, Passwords, TokenHasher, password_problem
from identity.throttle import LoginThrottle
from krika_common.db import utcnow
from krika_common.events import (
    EmailVerificationRequested,
    PasswordResetRequested,
    UserRegistered,
    UserReinstated,
    UserRolesChanged,
    UserSuspended,
    record_event,
)
from krika_common.events.sealed import seal
from krika_common.storage import Storage

PRODUCER = "identity"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """What the use cases need besides the session; built once in the app's lifespan."""

    settings: Settings
    keys: SigningKeys
    passwords: Passwords
    tokens: TokenHasher
    throttle: LoginThrottle
    # notify's link key: one-time tokens travel sealed with it.
    link_key: ECKey
    # KYC documents.
    storage: Storage


def _check_password(password: str, email: str, full_name: str) -> None:
    problem = password_problem(password, email, full_name)
    if problem is not None:
        raise WeakPassword(problem)


async def _send_one_time_token(
    session: AsyncSession, idt: Identity, user: User, purpose: TokenPurpose
) -> None:
    """Issue a fresh single-use token (voiding older ones) and have notify e-mail it."""
    ttl, event = {
        TokenPurpose.verify_email: (
            idt.settings.email_verification_ttl,
            EmailVerificationRequested,
        ),
        TokenPurpose.reset_password: (idt.settings.password_reset_ttl, PasswordResetRequested),
    }[purpose]
    now = utcnow()
    await repository.spend_one_time_tokens(session, user.id, purpose, now)
    raw = idt.tokens.new()
    expires_at = now + timedelta(seconds=ttl)
    session.add(
        OneTimeToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=idt.tokens.digest(raw),
            expires_at=expires_at,
        )
    )
    await record_event(
        session,
        event(
            user_id=user.id,
            email=user.email,
            full_name=user.full_name,
            sealed_token=seal(raw, idt.link_key),
            expires_at=expires_at,
        ),
        producer=PRODUCER,
    )


async def register(
    session: AsyncSession, idt: Identity, *, email: str, password: str, full_name: str, role: str
) -> User:
    _check_password(password, email, full_name)
    if await repository.get_user_by_email(session, email) is not None:
        raise EmailTaken()
    user = User(
        email=email,
        full_name=full_name,
        password_hash=await idt.passwords.hash(password),
        roles=[role],
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration won the unique e-mail index
        raise EmailTaken() from exc
    await record_event(
        session,
        UserRegistered(
            user_id=user.id, email=user.email, full_name=user.full_name, roles=user.roles
        ),
        producer=PRODUCER,
    )
    await _send_one_time_token(session, idt, user, TokenPurpose.verify_email)
    return user


def _access_token(idt: Identity, user: User, now: datetime) -> str:
    iat = int(now.timestamp())
    return idt.keys.sign(
        {
            "sub": str(user.id),
            "roles": list(user.roles),
            "iss": idt.settings.jwt_issuer,
            "aud": idt.settings.jwt_audience,
            "iat": iat,
            "exp": iat + idt.settings.access_token_ttl,
            "jti": uuid.uuid4().hex,
            "ver": user.token_version,
        }
    )


def _issue_tokens(
    session: AsyncSession,
    idt: Identity,
    user: User,
    family_id: uuid.UUID,
    now: datetime,
    raw: str | None = None,
) -> TokenPair:
    """A new access token and the refresh token `raw` (a fresh random one by default)."""
    raw = raw or idt.tokens.new()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=idt.tokens.digest(raw),
            expires_at=now + timedelta(seconds=idt.settings.refresh_token_ttl),
        )
    )
    return TokenPair(
        access_token=_access_token(idt, user, now),
        refresh_token=raw,
        expires_in=idt.settings.access_token_ttl,
    )


async def login(
    session: AsyncSession, idt: Identity, *, email: str, password: str, ip: str
) -> TokenPair:
    await idt.throttle.reserve(email, ip)  # counted before the password is looked at
    user = await repository.get_user_by_email(session, email)
    try:
        correct = await idt.passwords.verify(user.password_hash if user else None, password)
    except PasswordHashingBusy:
        await idt.throttle.abandoned(email, ip)
        raise
    if not correct or user is None:
        raise InvalidCredentials()
    await idt.throttle.succeeded(email, ip)
    if not user.is_active:
        raise AccountSuspended()
    if idt.passwords.needs_rehash(user.password_hash):
        user.password_hash = await idt.passwords.hash(password)
    return _issue_tokens(session, idt, user, uuid.uuid4(), utcnow())


async def refresh(session: AsyncSession, idt: Identity, raw_token: str) -> TokenPair:
    """Rotate: spend this token, issue the next of its family. A spent token revokes the family,
    unless it comes back within the grace window while its successor is still unused (a lost
    response, two tabs): then the same successor is answered again, with a new access token.

    The successor's value is derived from the spent token (an HMAC), so it can be answered
    again without ever being stored in clear.
    """
    now = utcnow()
    token = await repository.get_refresh_token_for_update(session, idt.tokens.digest(raw_token))
    if token is None or token.expires_at <= now:
        raise InvalidRefreshToken()
    successor_raw = idt.tokens.successor(raw_token)
    if token.used_at is not None:
        grace = timedelta(seconds=idt.settings.refresh_reuse_grace)
        if token.revoked_at is None and now - token.used_at <= grace:
            successor = await repository.get_refresh_token_for_update(
                session, idt.tokens.digest(successor_raw)
            )
            if successor is not None and successor.used_at is None and successor.revoked_at is None:
                user = await _session_user(session, token)
                return TokenPair(
                    access_token=_access_token(idt, user, now),
                    refresh_token=successor_raw,
                    expires_in=idt.settings.access_token_ttl,
                )
        # Either a thief or the owner replays a spent token: nobody keeps this session.
        await repository.revoke_family(session, token.family_id, now)
        raise RefreshTokenReused()
    if token.revoked_at is not None:
        raise InvalidRefreshToken()
    user = await _session_user(session, token)
    token.used_at = now
    return _issue_tokens(session, idt, user, token.family_id, now, raw=successor_raw)


async def _session_user(session: AsyncSession, token: RefreshToken) -> User:
    """The active user a refresh token belongs to; a suspended one ends the session."""
    user = await repository.get_user(session, token.user_id)
    if user is None:
        raise InvalidRefreshToken()
    if not user.is_active:
        await repository.revoke_family(session, token.family_id, utcnow())
        raise AccountSuspended()
    return user


async def logout(session: AsyncSession, idt: Identity, raw_token: str) -> None:
    """End the session this refresh token belongs to (its whole family). Unknown: no-op."""
    token = await repository.get_refresh_token_for_update(session, idt.tokens.digest(raw_token))
    if token is not None:
        await repository.revoke_family(session, token.family_id, utcnow())


async def _spend_one_time_token(
    session: AsyncSession, idt: Identity, raw: str, purpose: TokenPurpose
) -> User:
    now = utcnow()
    token = await repository.get_one_time_token_for_update(session, idt.tokens.digest(raw), purpose)
    if token is None or token.used_at is not None or token.expires_at <= now:
        raise InvalidOneTimeToken()
    user = await repository.get_user(session, token.user_id, for_update=True)
    if user is None or not user.is_active:
        raise InvalidOneTimeToken()
    await repository.spend_one_time_tokens(session, user.id, purpose, now)
    return user


async def verify_email(session: AsyncSession, idt: Identity, raw: str) -> User:
    user = await _spend_one_time_token(session, idt, raw, TokenPurpose.verify_email)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        user.updated_at = utcnow()
    return user


async def resend_verification(session: AsyncSession, idt: Identity, user_id: uuid.UUID) -> None:
    user = await active_user(session, user_id)
    if user.email_verified_at is None:
        await _send_one_time_token(session, idt, user, TokenPurpose.verify_email)


async def send_password_reset(
    sessionmaker: async_sessionmaker[AsyncSession], idt: Identity, email: str
) -> None:
    """Mail a reset link if the account exists, is active and has not had too many lately.

    Runs after the answer is sent (the endpoint schedules it), so the answer looks and takes
    the same whether or not the account exists.
    """
    try:
        async with sessionmaker() as session, session.begin():
            user = await repository.get_user_by_email(session, email)
            if user is None or not user.is_active:
                return
            if not await idt.throttle.allow_reset_mail(email):
                log.info("reset e-mail for user %s not sent: too many lately", user.id)
                return
            await _send_one_time_token(session, idt, user, TokenPurpose.reset_password)
    except Exception:
        log.exception("password reset not sent")


async def reset_password(session: AsyncSession, idt: Identity, raw: str, password: str) -> None:
    user = await _spend_one_time_token(session, idt, raw, TokenPurpose.reset_password)
    _check_password(password, user.email, user.full_name)
    now = utcnow()
    user.password_hash = await idt.passwords.hash(password)
    user.updated_at = now
    # Whoever knew the old password loses their sessions.
    await repository.revoke_user_tokens(session, user.id, now)


async def change_password(
    session: AsyncSession, idt: Identity, user_id: uuid.UUID, current: str, new: str
) -> None:
    user = await active_user(session, user_id)
    if not await idt.passwords.verify(user.password_hash, current):
        raise WrongPassword()
    _check_password(new, user.email, user.full_name)
    now = utcnow()
    user.password_hash = await idt.passwords.hash(new)
    user.updated_at = now
    await repository.revoke_user_tokens(session, user.id, now)
    # A reset link mailed before the change must not undo it.
    await repository.spend_one_time_tokens(session, user.id, TokenPurpose.reset_password, now)


async def active_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The caller's own account; a suspended one is refused even with a still-valid token."""
    user = await repository.get_user(session, user_id)
    if user is None:
        raise UserNotFound()
    if not user.is_active:
        raise AccountSuspended()
    return user


async def update_me(session: AsyncSession, user_id: uuid.UUID, *, full_name: str) -> User:
    user = await active_user(session, user_id)
    user.full_name = full_name
    user.updated_at = utcnow()
    return user


async def _target(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.get_user(session, user_id, for_update=True)
    if user is None:
        raise UserNotFound()
    return user


async def set_roles(
    session: AsyncSession, admin_id: uuid.UUID, user_id: uuid.UUID, roles: list[Role]
) -> User:
    """The user's current tokens stop being honoured at once (access marks); they refresh."""
    user = await _target(session, user_id)
    if user.id == admin_id and Role.admin not in roles:
        raise CannotModifySelf()
    new_roles = sorted({r.value for r in roles})
    if new_roles == sorted(user.roles):
        return user  # nothing changed: no event, tokens stay valid
    now = utcnow()
    user.roles = new_roles
    user.token_version += 1
    user.updated_at = now
    await record_event(
        session,
        UserRolesChanged(
            user_id=user.id,
            roles=new_roles,
            changed_at=now,
            token_version=user.token_version,
            suspended=not user.is_active,
        ),
        producer=PRODUCER,
    )
    return user


async def suspend(
    session: AsyncSession, admin_id: uuid.UUID, user_id: uuid.UUID, reason: str | None
) -> User:
    user = await _target(session, user_id)
    if user.id == admin_id:
        raise CannotModifySelf()
    if user.status == UserStatus.suspended:
        return user  # idempotent: no second event
    now = utcnow()
    user.status = UserStatus.suspended
    user.suspended_at = now
    user.suspension_reason = reason
    user.token_version += 1
    user.updated_at = now
    await repository.revoke_user_tokens(session, user.id, now)
    for purpose in TokenPurpose:  # no link mailed before the suspension works after it
        await repository.spend_one_time_tokens(session, user.id, purpose, now)
    await record_event(
        session,
        UserSuspended(
            user_id=user.id, reason=reason, suspended_at=now, token_version=user.token_version
        ),
        producer=PRODUCER,
    )
    return user


async def reinstate(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await _target(session, user_id)
    if user.is_active:
        return user  # idempotent: no event
    now = utcnow()
    user.status = UserStatus.active
    user.suspended_at = None
    user.suspension_reason = None
    # Tokens from before the suspension stay refused: the user signs in again.
    user.token_version += 1
    user.updated_at = now
    await record_event(
        session,
        UserReinstated(user_id=user.id, reinstated_at=now, token_version=user.token_version),
        producer=PRODUCER,
    )
    return user
