"""Every orders query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import get_by_id, utcnow
from krika_common.pagination import Page, keyset_page
from orders.models import Attachment, CatalogService, Delivery, HistoryEntry, Order

# --- orders --------------------------------------------------------------------------------


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> Order | None:
    """The order; `for_update` locks its row for the transition about to happen (two racing
    transitions then serialise: the second sees the first's outcome)."""
    return await get_by_id(session, Order, order_id, for_update=for_update)


async def list_orders(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    party: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Order]:
    """Newest first: the user's orders as `party` (customer/provider; None: either), every
    order when `user_id` is None (admin)."""
    stmt = select(Order)
    if user_id is not None:
        if party == "customer":
            stmt = stmt.where(col(Order.customer_id) == user_id)
        elif party == "provider":
            stmt = stmt.where(col(Order.provider_id) == user_id)
        else:
            stmt = stmt.where(
                or_(col(Order.customer_id) == user_id, col(Order.provider_id) == user_id)
            )
    if status is not None:
        stmt = stmt.where(col(Order.status) == status)
    keys = (col(Order.created_at), col(Order.id))
    return await keyset_page(session, stmt, keys, cursor=cursor, limit=limit)


async def claim_due_timers(session: AsyncSession, *, now: datetime, limit: int) -> list[Order]:
    """Orders whose timer is due, locked; rows another worker holds are skipped (it fires
    them), so a timer is fired by one worker only, and a committed firing clears it."""
    stmt = (
        select(Order)
        .where(col(Order.timer).is_not(None), col(Order.timer_due_at) <= now)
        .order_by(col(Order.timer_due_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    orders = list((await session.exec(stmt)).all())
    for order in orders:
        await session.refresh(order)
    return orders


# --- history -------------------------------------------------------------------------------


async def history_of(session: AsyncSession, order_id: uuid.UUID) -> list[HistoryEntry]:
    """Oldest first (an order has a few dozen lines at most: no pagination needed)."""
    stmt = (
        select(HistoryEntry)
        .where(col(HistoryEntry.order_id) == order_id)
        .order_by(col(HistoryEntry.id))
    )
    return list((await session.exec(stmt)).all())


# --- deliveries and attachments ------------------------------------------------------------


async def deliveries_of(session: AsyncSession, order_id: uuid.UUID) -> list[Delivery]:
    stmt = select(Delivery).where(col(Delivery.order_id) == order_id).order_by(col(Delivery.number))
    return list((await session.exec(stmt)).all())


async def count_deliveries(session: AsyncSession, order_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(Delivery).where(col(Delivery.order_id) == order_id)
    return (await session.exec(stmt)).one()


async def attachments_of(session: AsyncSession, order_id: uuid.UUID) -> list[Attachment]:
    stmt = (
        select(Attachment)
        .where(col(Attachment.order_id) == order_id)
        .order_by(col(Attachment.created_at), col(Attachment.id))
    )
    return list((await session.exec(stmt)).all())


async def get_attachments(
    session: AsyncSession, order_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[Attachment]:
    stmt = select(Attachment).where(
        col(Attachment.order_id) == order_id, col(Attachment.id).in_(list(ids))
    )
    return list((await session.exec(stmt)).all())


async def count_attachments(session: AsyncSession, order_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(Attachment).where(col(Attachment.order_id) == order_id)
    return (await session.exec(stmt)).one()


async def use_attachments(
    session: AsyncSession, ids: Sequence[uuid.UUID], delivery_id: uuid.UUID
) -> None:
    await session.exec(
        update(Attachment).where(col(Attachment.id).in_(list(ids))).values(delivery_id=delivery_id)
    )


# --- catalog's services (read model) -------------------------------------------------------


async def get_catalog_service(
    session: AsyncSession, service_id: uuid.UUID
) -> CatalogService | None:
    return await get_by_id(session, CatalogService, service_id)


async def upsert_catalog_service(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert the service or update it, only from a higher revision (one statement: two
    events of one service handled at once cannot interleave)."""
    stmt = insert(CatalogService).values(**values, updated_at=utcnow())
    changed = {k: stmt.excluded[k] for k in (*values, "updated_at") if k != "service_id"}
    await session.exec(
        stmt.on_conflict_do_update(
            index_elements=[col(CatalogService.service_id)],
            set_=changed,
            where=col(CatalogService.revision) < stmt.excluded.revision,
        )
    )
