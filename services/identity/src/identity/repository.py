"""Every identity query."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import any_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from identity.models import KycFile, KycSubmission, OneTimeToken, RefreshToken, User
from krika_common.db import get_by_id
from krika_common.pagination import Page, keyset_page


async def get_user(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> User | None:
    return await get_by_id(session, User, user_id, for_update=for_update)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(col(User.email) == email)
    return (await session.exec(stmt)).one_or_none()


async def list_users(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    role: str | None,
    status: str | None,
    email_contains: str | None,
) -> Page[User]:
    """Newest first (keyset on created_at, id)."""
    stmt = select(User)
    if role is not None:
        stmt = stmt.where(role == any_(col(User.roles)))
    if status is not None:
        stmt = stmt.where(col(User.status) == status)
    if email_contains:
        escaped = (
            email_contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        )
        stmt = stmt.where(col(User.email).like(f"%{escaped}%", escape="\\"))
    keys = (col(User.created_at), col(User.id))
    return await keyset_page(session, stmt, keys, cursor=cursor, limit=limit)


async def get_refresh_token_for_update(
    session: AsyncSession, token_hash: bytes
) -> RefreshToken | None:
    stmt = select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash).with_for_update()
    return (await session.exec(stmt)).one_or_none()


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def get_one_time_token_for_update(
    session: AsyncSession, token_hash: bytes, purpose: str
) -> OneTimeToken | None:
    stmt = (
        select(OneTimeToken)
        .where(col(OneTimeToken.token_hash) == token_hash, col(OneTimeToken.purpose) == purpose)
        .with_for_update()
    )
    return (await session.exec(stmt)).one_or_none()


async def spend_one_time_tokens(
    session: AsyncSession, user_id: uuid.UUID, purpose: str, now: datetime
) -> None:
    """Mark every unused token of this purpose spent (a newer one, or success, voids the rest)."""
    await session.exec(
        update(OneTimeToken)
        .where(
            col(OneTimeToken.user_id) == user_id,
            col(OneTimeToken.purpose) == purpose,
            col(OneTimeToken.used_at).is_(None),
        )
        .values(used_at=now)
    )


async def get_kyc_submission(
    session: AsyncSession, submission_id: uuid.UUID, *, for_update: bool = False
) -> KycSubmission | None:
    return await get_by_id(session, KycSubmission, submission_id, for_update=for_update)


async def latest_kyc_submission(session: AsyncSession, user_id: uuid.UUID) -> KycSubmission | None:
    stmt = (
        select(KycSubmission)
        .where(col(KycSubmission.user_id) == user_id)
        .order_by(col(KycSubmission.submitted_at).desc(), col(KycSubmission.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def kyc_files(session: AsyncSession, submission_id: uuid.UUID) -> list[KycFile]:
    stmt = (
        select(KycFile)
        .where(col(KycFile.submission_id) == submission_id)
        .order_by(col(KycFile.kind))
    )
    return list((await session.exec(stmt)).all())


async def list_kyc_submissions(
    session: AsyncSession, *, status: str | None, cursor: str | None, limit: int
) -> Page[KycSubmission]:
    """The review queue: oldest first (keyset on submitted_at, id)."""
    stmt = select(KycSubmission)
    if status is not None:
        stmt = stmt.where(col(KycSubmission.status) == status)
    keys = (col(KycSubmission.submitted_at), col(KycSubmission.id))
    return await keyset_page(session, stmt, keys, cursor=cursor, limit=limit, descending=False)
