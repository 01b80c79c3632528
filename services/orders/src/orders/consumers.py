"""Orders' event handlers (through the inbox): payments move orders, catalog feeds the read
model of services that orders are priced from.

Events in: payments.payment_succeeded (→ paid; late on a cancelled order → order_cancelled
again with `paid: true`, so payments refunds), payments.payment_failed and
payments.refund_succeeded / refund_failed (history notes), catalog.service_published /
service_updated / service_archived (the read model).

Ordering: events may arrive late, twice or out of order. The inbox skips a redelivered event;
a payment is applied once even under two events for it (the order row is locked and `paid`
checked). Catalog events carry the service's `revision`: the read model keeps the highest one
(one conditional upsert), so an older event arriving late never moves a service back.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Envelope,
    InboxHandlers,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    ServiceArchived,
    ServicePublished,
    ServiceUpdated,
)
from orders import repository, service
from orders.config import Settings


def inbox_handlers(settings: Settings) -> InboxHandlers:
    handlers = InboxHandlers()

    @handlers.on(PaymentSucceeded, consumer="orders.payments")
    async def payment_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        await service.payment_succeeded(session, settings, PaymentSucceeded.from_envelope(envelope))

    @handlers.on(PaymentFailed, consumer="orders.payments")
    async def payment_failed(session: AsyncSession, envelope: Envelope) -> None:
        await service.payment_failed(session, PaymentFailed.from_envelope(envelope))

    @handlers.on(RefundFailed, consumer="orders.payments")
    async def refund_failed(session: AsyncSession, envelope: Envelope) -> None:
        await service.refund_failed(session, RefundFailed.from_envelope(envelope))

    @handlers.on(RefundSucceeded, consumer="orders.payments")
    async def refund_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        await service.refund_succeeded(session, RefundSucceeded.from_envelope(envelope))

    async def service_changed(
        session: AsyncSession, event: ServicePublished | ServiceUpdated | ServiceArchived
    ) -> None:
        await repository.upsert_catalog_service(
            session,
            {
                "service_id": event.service_id,
                "provider_id": event.provider_id,
                "title": event.title,
                "status": event.status,
                "packages": [p.model_dump(mode="json") for p in event.packages],
                "revision": event.revision,
                "changed_at": event.changed_at,
            },
        )

    @handlers.on(ServicePublished, consumer="orders.catalog")
    async def service_published(session: AsyncSession, envelope: Envelope) -> None:
        await service_changed(session, ServicePublished.from_envelope(envelope))

    @handlers.on(ServiceUpdated, consumer="orders.catalog")
    async def service_updated(session: AsyncSession, envelope: Envelope) -> None:
        await service_changed(session, ServiceUpdated.from_envelope(envelope))

    @handlers.on(ServiceArchived, consumer="orders.catalog")
    async def service_archived(session: AsyncSession, envelope: Envelope) -> None:
        event = ServiceArchived.from_envelope(envelope)
        # An archive is final whatever its status field says.
        await service_changed(session, event.model_copy(update={"status": "archived"}))

    return handlers
