"""Identity use cases. They flush, never commit: the request's session commits at the edge."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
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
from identity.security import Passwords, TokenHasher, password_problem
from identity.throttle import LoginThrottle
from krika_common.db import utcnow
from krika_common.events import (
    EmailVerificationRequested,
    PasswordResetRequested,
    UserRegistered,
    UserSuspended,
    record_event,
)

PRODUCER = "identity"


@dataclass(frozen=True, slots=True)
class Identity:
    """What the use cases need besides the session; built once in the app's lifespan."""

    settings: Settings
    keys: SigningKeys
    passwords: Passwords
    tokens: TokenHasher
    throttle: LoginThrottle


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
            token=raw,
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
        }
    )


def _issue_tokens(
    session: AsyncSession, idt: Identity, user: User, family_id: uuid.UUID, now: datetime
) -> TokenPair:
    raw = idt.tokens.new()
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
    await idt.throttle.check(email, ip)
    user = await repository.get_user_by_email(session, email)
    if (
        not await idt.passwords.verify(user.password_hash if user else None, password)
        or user is None
    ):
        await idt.throttle.failed(email, ip)
        raise InvalidCredentials()
    await idt.throttle.succeeded(email, ip)
    if not user.is_active:
        raise AccountSuspended()
    if idt.passwords.needs_rehash(user.password_hash):
        user.password_hash = await idt.passwords.hash(password)
    return _issue_tokens(session, idt, user, uuid.uuid4(), utcnow())


async def refresh(session: AsyncSession, idt: Identity, raw_token: str) -> TokenPair:
    """Rotate: spend this token, issue the next of its family. A spent token revokes the family."""
    now = utcnow()
    token = await repository.get_refresh_token_for_update(session, idt.tokens.digest(raw_token))
    if token is None or token.expires_at <= now:
        raise InvalidRefreshToken()
    if token.used_at is not None:
        # Either a thief or the owner replays a spent token: nobody keeps this session.
        await repository.revoke_family(session, token.family_id, now)
        raise RefreshTokenReused()
    if token.revoked_at is not None:
        raise InvalidRefreshToken()
    user = await repository.get_user(session, token.user_id)
    if user is None:
        raise InvalidRefreshToken()
    if not user.is_active:
        await repository.revoke_family(session, token.family_id, now)
        raise AccountSuspended()
    token.used_at = now
    return _issue_tokens(session, idt, user, token.family_id, now)


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
    if user is None:
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


async def forgot_password(session: AsyncSession, idt: Identity, email: str) -> None:
    """Always looks the same to the caller, whether or not the account exists."""
    user = await repository.get_user_by_email(session, email)
    if user is None or not user.is_active:
        return
    await _send_one_time_token(session, idt, user, TokenPurpose.reset_password)


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
    """Takes effect in the user's tokens at their next refresh (at most one access-token TTL)."""
    user = await _target(session, user_id)
    if user.id == admin_id and Role.admin not in roles:
        raise CannotModifySelf()
    user.roles = sorted({r.value for r in roles})
    user.updated_at = utcnow()
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
    user.updated_at = now
    await repository.revoke_user_tokens(session, user.id, now)
    await record_event(
        session, UserSuspended(user_id=user.id, reason=reason, suspended_at=now), producer=PRODUCER
    )
    return user


async def reinstate(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await _target(session, user_id)
    user.status = UserStatus.active
    user.suspended_at = None
    user.suspension_reason = None
    user.updated_at = utcnow()
    return user
