"""Every catalog query (search's statement is in catalog.search)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from catalog.models import Category, CompletedOrder, Media, Package, Provider, Review, Service
from krika_common.db import get_by_id
from krika_common.pagination import Page, keyset_page

# --- categories ----------------------------------------------------------------------------


async def all_categories(session: AsyncSession) -> list[Category]:
    """The whole tree, by slug (it is small: at most `max_categories`)."""
    return list((await session.exec(select(Category).order_by(col(Category.slug)))).all())


async def get_category(session: AsyncSession, category_id: uuid.UUID) -> Category | None:
    return await get_by_id(session, Category, category_id)


async def count_categories(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(Category))).one()


# --- providers (identity's read model) -----------------------------------------------------


async def provider_for(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> Provider:
    """The provider's row, created (kyc none, not suspended) if catalog has not heard of them,
    and locked: FOR UPDATE by the event handlers that change it, FOR SHARE by the use cases
    that depend on it (so a suspension and a publish serialise)."""
    await session.exec(insert(Provider).values(user_id=user_id).on_conflict_do_nothing())
    stmt = select(Provider).where(col(Provider.user_id) == user_id)
    stmt = stmt.with_for_update() if for_update else stmt.with_for_update(read=True)
    provider = (await session.exec(stmt)).one()
    await session.refresh(provider)  # the identity map may hold an older copy
    return provider


async def set_provider_suspended(
    session: AsyncSession, provider_id: uuid.UUID, suspended: bool
) -> list[uuid.UUID]:
    """Copy the provider's suspension onto their services; the ids of those services."""
    result = await session.exec(
        update(Service)
        .where(col(Service.provider_id) == provider_id)
        .values(provider_suspended=suspended)
        .returning(col(Service.id))
    )
    return list(result.scalars().all())


# --- services ------------------------------------------------------------------------------


async def get_service(
    session: AsyncSession, service_id: uuid.UUID, *, for_update: bool = False
) -> Service | None:
    return await get_by_id(session, Service, service_id, for_update=for_update)


async def packages_of(session: AsyncSession, service_id: uuid.UUID) -> list[Package]:
    stmt = (
        select(Package).where(col(Package.service_id) == service_id).order_by(col(Package.position))
    )
    return list((await session.exec(stmt)).all())


async def media_of(session: AsyncSession, service_id: uuid.UUID) -> list[Media]:
    stmt = (
        select(Media)
        .where(col(Media.service_id) == service_id)
        .order_by(col(Media.created_at), col(Media.id))
    )
    return list((await session.exec(stmt)).all())


async def get_media(
    session: AsyncSession, service_id: uuid.UUID, media_id: uuid.UUID
) -> Media | None:
    stmt = select(Media).where(col(Media.id) == media_id, col(Media.service_id) == service_id)
    return (await session.exec(stmt)).one_or_none()


async def count_media(session: AsyncSession, service_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(Media).where(col(Media.service_id) == service_id)
    return (await session.exec(stmt)).one()


async def delete_packages(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    if ids:
        await session.exec(delete(Package).where(col(Package.id).in_(ids)))


async def list_provider_services(
    session: AsyncSession, provider_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[Service]:
    """Every service of the provider, whatever its state, newest first."""
    stmt = select(Service).where(col(Service.provider_id) == provider_id)
    keys = (col(Service.created_at), col(Service.id))
    return await keyset_page(session, stmt, keys, cursor=cursor, limit=limit)


# --- orders and reviews --------------------------------------------------------------------


async def add_completed_order(session: AsyncSession, order: CompletedOrder) -> None:
    await session.exec(
        insert(CompletedOrder)
        .values(
            order_id=order.order_id,
            service_id=order.service_id,
            customer_id=order.customer_id,
            provider_id=order.provider_id,
            completed_at=order.completed_at,
        )
        .on_conflict_do_nothing()
    )


async def get_completed_order(session: AsyncSession, order_id: uuid.UUID) -> CompletedOrder | None:
    return await get_by_id(session, CompletedOrder, order_id)


async def review_of_order(session: AsyncSession, order_id: uuid.UUID) -> Review | None:
    stmt = select(Review).where(col(Review.order_id) == order_id)
    return (await session.exec(stmt)).one_or_none()


async def get_review(
    session: AsyncSession, review_id: uuid.UUID, *, for_update: bool = False
) -> Review | None:
    return await get_by_id(session, Review, review_id, for_update=for_update)


async def list_reviews(
    session: AsyncSession, service_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[Review]:
    """Newest first."""
    stmt = select(Review).where(col(Review.service_id) == service_id)
    keys = (col(Review.created_at), col(Review.id))
    return await keyset_page(session, stmt, keys, cursor=cursor, limit=limit)
