"""What notify tells whom, for each event it consumes (through the inbox, queue `notify.events`).

Each handler decides the recipients and the template's context, then `service.notify_user`
stores at most one in-app notification and queues at most one e-mail per (event, kind,
recipient). An event about a user or an order notify has not heard of yet raises, and the bus
retries it later (its redelivery delays), by when identity's or orders' event has arrived.

| event | kind | to |
|---|---|---|
| identity.user_registered | welcome | the user |
| identity.email_verification_requested | email_verification (e-mail only, security) | the user |
| identity.password_reset_requested | password_reset (e-mail only, security) | the user |
| identity.kyc_submitted / _approved / _rejected | kyc_* | the provider |
| orders.order_placed | order_placed | the provider |
| payments.payment_succeeded | order_paid | the customer and the provider |
| orders.order_status_changed | order_delivered (-> delivered) | the customer |
|  | revision_requested (delivered -> in_progress, by the customer) | the provider |
|  | order_completed (-> completed) | both |
| orders.order_cancelled | order_cancelled | both |
| payments.refund_succeeded | refund_processed | the customer |
| ledger.provider_credited | provider_credited | the provider |
| payments.payout_succeeded / _failed | payout_* | the provider |
| catalog.review_posted | review_posted | the provider |
| chat.message_sent | chat_message (a digest, e-mail only) | each offline recipient |
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import cast, func, literal
from sqlalchemy.dialects.postgresql import JSONPATH, insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import (
    EmailVerificationRequested,
    Envelope,
    InboxHandlers,
    KycApproved,
    KycRejected,
    KycSubmitted,
    MessageSent,
    OrderCancelled,
    OrderPlaced,
    OrderStatusChanged,
    PasswordResetRequested,
    PaymentSucceeded,
    PayoutFailed,
    PayoutSucceeded,
    ProviderCredited,
    RefundSucceeded,
    ReviewPosted,
    UserRegistered,
)
from notify import service
from notify.errors import OrderUnknown
from notify.models import ChatDigest, KnownOrder
from notify.service import EMAIL, Notify

# A digest keeps the newest messages only (the e-mail shows the last few and counts the rest).
DIGEST_KEEP = 20


async def order(session: AsyncSession, order_id: uuid.UUID) -> KnownOrder:
    found = await session.get(KnownOrder, order_id)
    if found is None:
        raise OrderUnknown(f"order {order_id} is not known yet")
    return found


def order_context(notify: Notify, known: KnownOrder) -> dict[str, Any]:
    return {"order_title": known.title, "order_url": notify.url(f"/orders/{known.id}")}


def inbox_handlers(notify: Notify) -> InboxHandlers:
    handlers = InboxHandlers()

    async def tell(session: AsyncSession, envelope: Envelope, kind: str, user_id: uuid.UUID,
                   context: dict[str, Any], data: dict[str, Any] | None = None,
                   to: tuple[str, str] | None = None) -> None:  # fmt: skip
        await service.notify_user(
            notify,
            session,
            event_id=envelope.id,
            kind=kind,
            user_id=user_id,
            context=context,
            data=data,
            to=to,
        )

    # --- identity -----------------------------------------------------------------------------

    @handlers.on(UserRegistered, consumer="notify.welcome")
    async def user_registered(session: AsyncSession, envelope: Envelope) -> None:
        event = UserRegistered.from_envelope(envelope)
        await service.remember_recipient(
            session, event.user_id, event.email, event.full_name, event.roles
        )
        await tell(
            session,
            envelope,
            "welcome",
            event.user_id,
            {"roles": event.roles, "dashboard_url": notify.url("/")},
        )

    async def one_time_link(
        session: AsyncSession,
        envelope: Envelope,
        event: EmailVerificationRequested | PasswordResetRequested,
        kind: str,
        path: str,
    ) -> None:
        # The token stays sealed in the queue; the worker opens it only to render the link.
        await service.remember_recipient(session, event.user_id, event.email, event.full_name, None)
        context = {"sealed_token": event.sealed_token, "link_path": path}
        await tell(
            session,
            envelope,
            kind,
            event.user_id,
            context | {"expires_at": event.expires_at},
            to=(event.email, event.full_name),
        )

    @handlers.on(EmailVerificationRequested, consumer="notify.email_verification")
    async def verification(session: AsyncSession, envelope: Envelope) -> None:
        event = EmailVerificationRequested.from_envelope(envelope)
        await one_time_link(session, envelope, event, "email_verification", "/verify-email")

    @handlers.on(PasswordResetRequested, consumer="notify.password_reset")
    async def password_reset(session: AsyncSession, envelope: Envelope) -> None:
        event = PasswordResetRequested.from_envelope(envelope)
        await one_time_link(session, envelope, event, "password_reset", "/reset-password")

    kyc = {"kyc_url": notify.url("/settings/verification")}

    @handlers.on(KycSubmitted, consumer="notify.kyc_submitted")
    async def kyc_submitted(session: AsyncSession, envelope: Envelope) -> None:
        event = KycSubmitted.from_envelope(envelope)
        await tell(session, envelope, "kyc_submitted", event.user_id, kyc)

    @handlers.on(KycApproved, consumer="notify.kyc_approved")
    async def kyc_approved(session: AsyncSession, envelope: Envelope) -> None:
        event = KycApproved.from_envelope(envelope)
        context = kyc | {"catalog_url": notify.url("/services/new")}
        await tell(session, envelope, "kyc_approved", event.user_id, context)

    @handlers.on(KycRejected, consumer="notify.kyc_rejected")
    async def kyc_rejected(session: AsyncSession, envelope: Envelope) -> None:
        event = KycRejected.from_envelope(envelope)
        context = kyc | {"reason": event.reason}
        await tell(session, envelope, "kyc_rejected", event.user_id, context)

    # --- orders ---------------------------------------------------------------------------------

    @handlers.on(OrderPlaced, consumer="notify.order_placed")
    async def order_placed(session: AsyncSession, envelope: Envelope) -> None:
        event = OrderPlaced.from_envelope(envelope)
        await session.exec(
            insert(KnownOrder)
            .values(
                id=event.order_id,
                title=event.title,
                customer_id=event.customer_id,
                provider_id=event.provider_id,
                service_id=event.service_id,
                price=event.price,
                currency=event.currency,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        known = await order(session, event.order_id)
        customer = await service.recipient(session, event.customer_id)
        context = order_context(notify, known) | {
            "amount": event.price,
            "currency": event.currency,
            "customer_name": customer.full_name,
        }
        data = {"order_id": str(event.order_id)}
        await tell(session, envelope, "order_placed", event.provider_id, context, data)

    @handlers.on(PaymentSucceeded, consumer="notify.order_paid")
    async def payment_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        event = PaymentSucceeded.from_envelope(envelope)
        known = await order(session, event.order_id)
        data = {"order_id": str(known.id)}
        base = order_context(notify, known) | {"amount": event.amount, "currency": event.currency}
        for role, user_id in (("customer", known.customer_id), ("provider", known.provider_id)):
            await tell(session, envelope, "order_paid", user_id, base | {"role": role}, data)

    @handlers.on(OrderStatusChanged, consumer="notify.order_status")
    async def order_status_changed(session: AsyncSession, envelope: Envelope) -> None:
        event = OrderStatusChanged.from_envelope(envelope)
        known = await order(session, event.order_id)
        base = order_context(notify, known)
        data = {"order_id": str(known.id), "status": event.to_status}
        if event.to_status == "delivered":
            provider = await service.recipient(session, known.provider_id)
            context = base | {"provider_name": provider.full_name}
            await tell(session, envelope, "order_delivered", known.customer_id, context, data)
        elif (
            event.from_status == "delivered"
            and event.to_status == "in_progress"
            and event.actor_role == "customer"
        ):
            context = base | {"note": event.note}
            await tell(session, envelope, "revision_requested", known.provider_id, context, data)
        elif event.to_status == "completed":
            for role, user_id in (("customer", known.customer_id), ("provider", known.provider_id)):
                context = base | {"role": role}
                await tell(session, envelope, "order_completed", user_id, context, data)

    @handlers.on(OrderCancelled, consumer="notify.order_cancelled")
    async def order_cancelled(session: AsyncSession, envelope: Envelope) -> None:
        event = OrderCancelled.from_envelope(envelope)
        known = await order(session, event.order_id)
        base = order_context(notify, known) | {
            "reason": event.reason,
            "cancelled_by": event.cancelled_by,
        }
        data = {"order_id": str(known.id)}
        for user_id, refund in ((known.customer_id, event.paid), (known.provider_id, False)):
            await tell(
                session, envelope, "order_cancelled", user_id, base | {"refund": refund}, data
            )

    # --- money ----------------------------------------------------------------------------------

    @handlers.on(RefundSucceeded, consumer="notify.refund_processed")
    async def refund_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        event = RefundSucceeded.from_envelope(envelope)
        known = await order(session, event.order_id)
        context = order_context(notify, known) | {
            "amount": event.amount,
            "currency": event.currency,
        }
        data = {"order_id": str(known.id)}
        await tell(session, envelope, "refund_processed", event.customer_id, context, data)

    wallet = {"wallet_url": notify.url("/wallet")}

    @handlers.on(ProviderCredited, consumer="notify.provider_credited")
    async def provider_credited(session: AsyncSession, envelope: Envelope) -> None:
        event = ProviderCredited.from_envelope(envelope)
        known = await order(session, event.order_id)
        context = (
            order_context(notify, known)
            | wallet
            | {
                "amount": event.amount,
                "commission": event.commission,
                "currency": event.currency,
            }
        )
        data = {"order_id": str(known.id)}
        await tell(session, envelope, "provider_credited", event.provider_id, context, data)

    @handlers.on(PayoutSucceeded, consumer="notify.payout_succeeded")
    async def payout_succeeded(session: AsyncSession, envelope: Envelope) -> None:
        event = PayoutSucceeded.from_envelope(envelope)
        context = wallet | {"amount": event.amount, "currency": event.currency}
        data = {"withdrawal_id": str(event.withdrawal_id)}
        await tell(session, envelope, "payout_succeeded", event.provider_id, context, data)

    @handlers.on(PayoutFailed, consumer="notify.payout_failed")
    async def payout_failed(session: AsyncSession, envelope: Envelope) -> None:
        event = PayoutFailed.from_envelope(envelope)
        context = wallet | {
            "amount": event.amount,
            "currency": event.currency,
            "reason": event.reason,
        }
        data = {"withdrawal_id": str(event.withdrawal_id)}
        await tell(session, envelope, "payout_failed", event.provider_id, context, data)

    @handlers.on(ReviewPosted, consumer="notify.review_posted")
    async def review_posted(session: AsyncSession, envelope: Envelope) -> None:
        event = ReviewPosted.from_envelope(envelope)
        known = await order(session, event.order_id)
        context = {
            "order_title": known.title,
            "rating": event.rating,
            "service_url": notify.url(f"/services/{event.service_id}"),
        }
        data = {"order_id": str(known.id), "review_id": str(event.review_id)}
        await tell(session, envelope, "review_posted", event.provider_id, context, data)

    # --- chat -----------------------------------------------------------------------------------

    @handlers.on(MessageSent, consumer="notify.chat_digest")
    async def message_sent(session: AsyncSession, envelope: Envelope) -> None:
        event = MessageSent.from_envelope(envelope)
        sender = await service.recipient(session, event.sender_id)
        line = {
            "message_id": str(event.message_id),
            "sender_name": sender.full_name,
            "preview": event.preview,
            "sent_at": event.sent_at.isoformat(),
        }
        for user_id in event.offline_recipient_ids:
            if not await service.enabled(session, user_id, EMAIL, "chat_message"):
                continue
            await add_to_digest(
                session, notify, user_id, event.conversation_id, event.order_id, line
            )

    return handlers


async def add_to_digest(
    session: AsyncSession,
    notify: Notify,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    order_id: uuid.UUID | None,
    line: dict[str, Any],
) -> None:
    """Add a message to the recipient's open digest of the conversation (opened if there is
    none, due at once or NOTIFY_CHAT_DIGEST_MINUTES after the last one sent)."""
    last_sent = (
        await session.exec(
            select(func.max(ChatDigest.sent_at)).where(
                ChatDigest.user_id == user_id, ChatDigest.conversation_id == conversation_id
            )
        )
    ).one()
    now = utcnow()
    gap = timedelta(minutes=notify.settings.chat_digest_minutes)
    send_after = max(now, last_sent + gap) if last_sent is not None else now
    table = ChatDigest.__table__  # type: ignore[attr-defined]
    stmt = insert(ChatDigest).values(
        id=uuid.uuid4(),
        user_id=user_id,
        conversation_id=conversation_id,
        order_id=order_id,
        messages=[line],
        count=1,
        send_after=send_after,
        created_at=now,
    )
    newest = func.jsonb_path_query_array(
        table.c.messages.op("||")(stmt.excluded.messages),
        cast(literal(f"$[last - {DIGEST_KEEP - 1} to last]"), JSONPATH),
    )
    await session.exec(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "conversation_id"],
            index_where=table.c.sent_at.is_(None),
            set_={"messages": newest, "count": table.c.count + 1},
        )
    )
