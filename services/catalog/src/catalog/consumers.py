"""Catalog's event handlers (through the inbox): the providers read model and review rights.

Events in: identity.kyc_submitted / kyc_approved / kyc_rejected (who may publish),
identity.user_suspended / user_reinstated / user_roles_changed (whose services are hidden),
orders.order_completed (who may review what).

Ordering: events may arrive late, twice or out of order. KYC: each status remembers the time
of the event it came from (`kyc_at`: submitted_at or decided_at) and only a newer event moves
it, except approved, which is final in identity and so wins over anything. Suspension: each
change carries identity's `token_version`; only a higher one than the last applied counts.
A suspension change is copied onto the provider's services (`provider_suspended`) and their
cached pages are invalidated, so search and public pages follow at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from catalog import repository
from catalog.cache import PageCache, service_page
from catalog.models import CompletedOrder, KycStatus
from krika_common.db import utcnow
from krika_common.events import (
    Envelope,
    InboxHandlers,
    KycApproved,
    KycRejected,
    KycSubmitted,
    OrderCompleted,
    UserReinstated,
    UserRolesChanged,
    UserSuspended,
)


def inbox_handlers(cache: PageCache) -> InboxHandlers:
    handlers = InboxHandlers()

    async def kyc(
        session: AsyncSession, user_id: uuid.UUID, status: KycStatus, at: datetime
    ) -> None:
        provider = await repository.provider_for(session, user_id, for_update=True)
        if provider.kyc_status == KycStatus.approved:
            return  # final
        newer = provider.kyc_at is None or (
            at >= provider.kyc_at if status != KycStatus.pending else at > provider.kyc_at
        )
        if status == KycStatus.approved or newer:
            provider.kyc_status = status
            provider.kyc_at = max(at, provider.kyc_at) if provider.kyc_at else at
            provider.updated_at = utcnow()

    async def access(
        session: AsyncSession, user_id: uuid.UUID, version: int, suspended: bool
    ) -> None:
        provider = await repository.provider_for(session, user_id, for_update=True)
        if version <= provider.access_version:
            return  # an older (or the same) change arriving late
        provider.access_version = version
        provider.updated_at = utcnow()
        if provider.suspended == suspended:
            return
        provider.suspended = suspended
        changed = await repository.set_provider_suspended(session, user_id, suspended)
        await cache.stale(session, *(service_page(sid) for sid in changed))

    @handlers.on(KycSubmitted, consumer="catalog.providers")
    async def kyc_submitted(session: AsyncSession, envelope: Envelope) -> None:
        event = KycSubmitted.from_envelope(envelope)
        await kyc(session, event.user_id, KycStatus.pending, event.submitted_at)

    @handlers.on(KycApproved, consumer="catalog.providers")
    async def kyc_approved(session: AsyncSession, envelope: Envelope) -> None:
        event = KycApproved.from_envelope(envelope)
        await kyc(session, event.user_id, KycStatus.approved, event.decided_at)

    @handlers.on(KycRejected, consumer="catalog.providers")
    async def kyc_rejected(session: AsyncSession, envelope: Envelope) -> None:
        event = KycRejected.from_envelope(envelope)
        await kyc(session, event.user_id, KycStatus.rejected, event.decided_at)

    @handlers.on(UserSuspended, consumer="catalog.providers")
    async def user_suspended(session: AsyncSession, envelope: Envelope) -> None:
        event = UserSuspended.from_envelope(envelope)
        await access(session, event.user_id, event.token_version, True)

    @handlers.on(UserReinstated, consumer="catalog.providers")
    async def user_reinstated(session: AsyncSession, envelope: Envelope) -> None:
        event = UserReinstated.from_envelope(envelope)
        await access(session, event.user_id, event.token_version, False)

    @handlers.on(UserRolesChanged, consumer="catalog.providers")
    async def user_roles_changed(session: AsyncSession, envelope: Envelope) -> None:
        event = UserRolesChanged.from_envelope(envelope)
        await access(session, event.user_id, event.token_version, event.suspended)

    @handlers.on(OrderCompleted, consumer="catalog.reviews")
    async def order_completed(session: AsyncSession, envelope: Envelope) -> None:
        event = OrderCompleted.from_envelope(envelope)
        await repository.add_completed_order(
            session,
            CompletedOrder(
                order_id=event.order_id,
                service_id=event.service_id,
                customer_id=event.customer_id,
                provider_id=event.provider_id,
                completed_at=event.completed_at,
            ),
        )

    return handlers
