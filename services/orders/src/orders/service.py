"""Orders use cases. They flush, never commit: the request's (or the event's) session commits.

Every transition goes through `_apply`: the rules of orders.states (state, role, revisions),
the timestamps and the order's timer, one history line, and its events in the same transaction
(outbox): orders.order_status_changed always, plus orders.order_completed on completion and
orders.order_cancelled (with `paid`) on cancellation. A placement writes the first history line
(`from_status` null) and orders.order_placed.

The order row is locked (SELECT ... FOR UPDATE) by every change, whoever makes it (a request, a
payment event, a timer): two racing transitions serialise and the second one is judged against
the first one's outcome (409 `invalid_transition` when it no longer applies).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import (
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderStatusChanged,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundSucceeded,
    record_event,
)
from krika_common.pagination import Page
from krika_common.storage import DOCUMENTS, Storage
from orders import repository, states
from orders.config import Settings
from orders.errors import (
    InvalidTransition,
    OrderClosed,
    OrderNotFound,
    OwnService,
    ServiceUnavailable,
    TooManyAttachments,
    UnknownAttachment,
    UnknownPackage,
    UnknownService,
)
from orders.models import Attachment, Delivery, HistoryEntry, Order, Timer
from orders.schemas import AttachmentOut, DeliveryOut, OrderIn, UploadedOut
from orders.states import Action, OrderStatus, Role

PRODUCER = "orders"
FILE_PREFIX = "deliveries"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Orders:
    """What the use cases need besides the session; built once in the app's lifespan."""

    settings: Settings
    storage: Storage


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: a user (with their token's roles) or the system (id None)."""

    id: uuid.UUID | None
    roles: frozenset[str]


SYSTEM = Caller(None, frozenset({Role.system}))


def parts_of(order: Order, caller: Caller) -> list[Role]:
    """The caller's parts in the order, most specific first (empty: a stranger to it)."""
    if caller.id is None:
        return [Role.system]
    parts = []
    if caller.id == order.customer_id:
        parts.append(Role.customer)
    if caller.id == order.provider_id:
        parts.append(Role.provider)
    if Role.admin in caller.roles:
        parts.append(Role.admin)
    return parts


# --- placing and reading -------------------------------------------------------------------


async def place_order(
    session: AsyncSession, customer_id: uuid.UUID, body: OrderIn, settings: Settings
) -> Order:
    """Snapshot the package from orders' read model of catalog, as it is now."""
    service = await repository.get_catalog_service(session, body.service_id)
    if service is None:
        raise UnknownService()
    if service.provider_id == customer_id:
        raise OwnService()
    if service.status != "published":
        raise ServiceUnavailable(f"The service is {service.status}: it takes no orders")
    package = next((p for p in service.packages if p["id"] == str(body.package_id)), None)
    if package is None:
        raise UnknownPackage()
    now = utcnow()
    order = Order(
        service_id=service.service_id,
        package_id=body.package_id,
        customer_id=customer_id,
        provider_id=service.provider_id,
        title=service.title,
        package_name=package["name"],
        price=package["price"],
        currency=package["currency"],
        delivery_days=package["delivery_days"],
        revisions_allowed=package["revisions"],
        requirements=body.requirements,
        created_at=now,
        updated_at=now,
        due_at=now + timedelta(days=package["delivery_days"]),
        timer=Timer.expire,
        timer_due_at=now + timedelta(seconds=settings.unpaid_timeout),
    )
    session.add(order)
    await session.flush()  # the order row before its history (foreign key)
    session.add(
        HistoryEntry(
            order_id=order.id,
            from_status=None,
            to_status=OrderStatus.pending,
            actor_id=customer_id,
            actor_role=Role.customer,
            note=None,
            at=now,
        )
    )
    await record_event(
        session,
        OrderPlaced(
            order_id=order.id,
            service_id=order.service_id,
            package_id=order.package_id,
            customer_id=order.customer_id,
            provider_id=order.provider_id,
            title=order.title,
            price=order.price,
            currency=order.currency,
            placed_at=now,
        ),
        producer=PRODUCER,
    )
    await session.flush()
    return order


async def visible_order(session: AsyncSession, order_id: uuid.UUID, caller: Caller) -> Order:
    """The order if the caller is one of its parties or an admin; anyone else's is 404."""
    order = await repository.get_order(session, order_id)
    if order is None or not parts_of(order, caller):
        raise OrderNotFound()
    return order


async def list_orders(
    session: AsyncSession,
    caller: Caller,
    *,
    party: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Order]:
    """The caller's orders; an admin without `as` sees every order."""
    every = party is None and Role.admin in caller.roles
    return await repository.list_orders(
        session,
        user_id=None if every else caller.id,
        party=party,
        status=status,
        cursor=cursor,
        limit=limit,
    )


async def history(session: AsyncSession, order_id: uuid.UUID, caller: Caller) -> list[HistoryEntry]:
    order = await visible_order(session, order_id, caller)
    return await repository.history_of(session, order.id)


# --- transitions ---------------------------------------------------------------------------


def _note(session: AsyncSession, order: Order, note: str, *, at: datetime) -> None:
    """A history line that changes nothing (a failed payment, a refund)."""
    session.add(
        HistoryEntry(
            order_id=order.id,
            kind="note",
            from_status=order.status,
            to_status=order.status,
            actor_id=None,
            actor_role=Role.system,
            note=note,
            at=at,
        )
    )


async def _apply(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    action: Action,
    role: Role,
    actor_id: uuid.UUID | None,
    note: str | None,
    *,
    at: datetime | None = None,
) -> None:
    """Take `action` on the (locked) order as `role`, or InvalidTransition."""
    now = at or utcnow()
    before = states.OrderState(
        OrderStatus(order.status), order.revisions_used, order.revisions_allowed
    )
    try:
        after = states.step(before, action, role)
    except states.TransitionRefused as exc:
        raise InvalidTransition(str(exc)) from exc
    order.status = after.status
    order.revisions_used = after.revisions_used
    order.updated_at = now
    order.timer, order.timer_due_at = None, None
    if action is Action.start:
        order.started_at = now
        order.due_at = now + timedelta(days=order.delivery_days)
    elif action is Action.deliver:
        order.delivered_at = now
        order.timer = Timer.auto_complete
        order.timer_due_at = now + timedelta(seconds=settings.auto_complete_after)
    elif after.status is OrderStatus.completed:
        order.completed_at = now
    elif after.status is OrderStatus.cancelled:
        order.cancelled_at = now
        order.cancel_reason = note
    session.add(
        HistoryEntry(
            order_id=order.id,
            from_status=before.status,
            to_status=after.status,
            actor_id=actor_id,
            actor_role=role,
            note=note,
            at=now,
        )
    )
    await record_event(
        session,
        OrderStatusChanged(
            order_id=order.id,
            customer_id=order.customer_id,
            provider_id=order.provider_id,
            from_status=before.status,
            to_status=after.status,
            actor_id=actor_id,
            actor_role=role,
            note=note,
            changed_at=now,
        ),
        producer=PRODUCER,
    )
    if after.status is OrderStatus.completed:
        await record_event(
            session,
            OrderCompleted(
                order_id=order.id,
                service_id=order.service_id,
                package_id=order.package_id,
                customer_id=order.customer_id,
                provider_id=order.provider_id,
                price=order.price,
                currency=order.currency,
                completed_at=now,
            ),
            producer=PRODUCER,
        )
    elif after.status is OrderStatus.cancelled:
        await _cancelled_event(session, order, role, at=now)
    await session.flush()


async def _cancelled_event(
    session: AsyncSession, order: Order, cancelled_by: Role, *, at: datetime
) -> None:
    await record_event(
        session,
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            provider_id=order.provider_id,
            price=order.price,
            currency=order.currency,
            paid=order.paid,
            reason=order.cancel_reason,
            cancelled_by=cancelled_by,
            cancelled_at=at,
        ),
        producer=PRODUCER,
    )


async def act(
    session: AsyncSession,
    settings: Settings,
    caller: Caller,
    order_id: uuid.UUID,
    action: Action,
    note: str | None = None,
) -> Order:
    """A party's (or an admin's) action on the order: the first of the caller's parts in it
    that the rules allow acts (a customer who is also an admin cancels as the customer)."""
    order = await repository.get_order(session, order_id, for_update=True)
    if order is None:
        raise OrderNotFound()
    parts = parts_of(order, caller)
    if not parts:
        raise OrderNotFound()
    status = OrderStatus(order.status)
    role = next((p for p in parts if p in states.allowed_roles(status, action)), parts[0])
    await _apply(session, settings, order, action, role, caller.id, note or None)
    return order


async def deliver(
    session: AsyncSession,
    settings: Settings,
    caller: Caller,
    order_id: uuid.UUID,
    message: str,
    attachment_ids: list[uuid.UUID],
) -> Order:
    """The provider hands in the work: a message and files uploaded to the order before."""
    order = await act(session, settings, caller, order_id, Action.deliver)
    wanted = list(dict.fromkeys(attachment_ids))
    found = await repository.get_attachments(session, order.id, wanted)
    if len(found) != len(wanted) or any(
        a.uploaded_by != caller.id or a.delivery_id is not None for a in found
    ):
        raise UnknownAttachment()
    delivery = Delivery(
        order_id=order.id,
        number=await repository.count_deliveries(session, order.id) + 1,
        delivered_by=order.provider_id,
        message=message,
        attachment_ids=wanted,
    )
    session.add(delivery)
    await session.flush()
    await repository.use_attachments(session, wanted, delivery.id)
    return order


# --- attachments and deliveries ------------------------------------------------------------


async def add_attachment(
    session: AsyncSession, orders: Orders, caller: Caller, order_id: uuid.UUID, data: bytes
) -> UploadedOut:
    """A party uploads a file (image or PDF) to an open order. The file is stored first; if
    anything fails after that, it is deleted again, so no file is left without its row."""
    order = await repository.get_order(session, order_id, for_update=True)
    if (
        order is None
        or caller.id is None
        or not ({Role.customer, Role.provider} & set(parts_of(order, caller)))
    ):
        raise OrderNotFound()
    if order.status in states.FINAL:
        raise OrderClosed()
    if await repository.count_attachments(session, order.id) >= (
        orders.settings.max_attachments_per_order
    ):
        raise TooManyAttachments()
    stored = await orders.storage.put(data, DOCUMENTS, prefix=FILE_PREFIX)  # 413/415/422 first
    try:
        attachment = Attachment(
            order_id=order.id,
            uploaded_by=caller.id,
            key=stored.key,
            content_type=stored.content_type,
            size=stored.size,
        )
        session.add(attachment)
        await session.flush()
    except BaseException:
        await discard_file(orders, stored.key)
        raise
    ttl = timedelta(seconds=orders.settings.file_link_ttl)
    return UploadedOut(id=attachment.id, url=await orders.storage.signed_url(stored.key, ttl))


async def discard_file(orders: Orders, key: str) -> None:
    try:
        await orders.storage.delete(key)
    except Exception:  # unreachable either way: no row points at it
        log.exception("could not delete the attachment file %s", key)


async def deliveries(
    session: AsyncSession, orders: Orders, caller: Caller, order_id: uuid.UUID
) -> list[DeliveryOut]:
    """Oldest first, each attachment with a link signed now."""
    order = await visible_order(session, order_id, caller)
    files = {a.id: a for a in await repository.attachments_of(session, order.id)}
    ttl = timedelta(seconds=orders.settings.file_link_ttl)
    out = []
    for delivery in await repository.deliveries_of(session, order.id):
        attachments = []
        for attachment_id in delivery.attachment_ids:
            file = files[attachment_id]
            attachments.append(
                AttachmentOut(
                    id=file.id,
                    url=await orders.storage.signed_url(file.key, ttl),
                    content_type=file.content_type,
                    size=file.size,
                )
            )
        out.append(
            DeliveryOut(
                id=delivery.id,
                number=delivery.number,
                delivered_by=delivery.delivered_by,
                message=delivery.message,
                attachments=attachments,
                created_at=delivery.created_at,
            )
        )
    return out


# --- payments (events) ---------------------------------------------------------------------


async def payment_succeeded(
    session: AsyncSession, settings: Settings, event: PaymentSucceeded
) -> None:
    """pending → paid. A payment for an order cancelled meanwhile keeps it cancelled and says
    again that it is cancelled, now paid, so payments refunds the money."""
    order = await repository.get_order(session, event.order_id, for_update=True)
    if order is None:
        log.warning("payment %s for an unknown order %s", event.payment_id, event.order_id)
        return
    if order.paid:
        if order.payment_id != event.payment_id:
            log.warning("order %s paid twice (%s)", order.id, event.payment_id)
            _note(session, order, f"Another payment received ({event.reference})", at=utcnow())
        return
    if event.amount != order.price or event.currency != order.currency:
        log.warning("payment %s does not match order %s", event.payment_id, order.id)
        _note(session, order, f"Payment {event.reference} does not match the price", at=utcnow())
        return
    now = utcnow()
    order.paid = True
    order.payment_id = event.payment_id
    order.paid_at = event.paid_at
    if order.status == OrderStatus.pending:
        await _apply(session, settings, order, Action.pay, Role.system, None, None, at=now)
        return
    # Cancelled before the money arrived: it stays cancelled, and the money goes back.
    order.updated_at = now
    _note(session, order, f"Payment {event.reference} arrived after cancellation: refund", at=now)
    await _cancelled_event(session, order, Role.system, at=now)
    await session.flush()


async def payment_failed(session: AsyncSession, event: PaymentFailed) -> None:
    order = await repository.get_order(session, event.order_id, for_update=True)
    if order is not None:
        reason = f": {event.reason}" if event.reason else ""
        _note(session, order, f"Payment {event.reference} failed{reason}", at=utcnow())


async def refund_succeeded(session: AsyncSession, event: RefundSucceeded) -> None:
    order = await repository.get_order(session, event.order_id, for_update=True)
    if order is not None:
        _note(
            session,
            order,
            f"Refunded {event.amount} {event.currency} ({event.reference})",
            at=utcnow(),
        )


async def refund_failed(session: AsyncSession, event: RefundFailed) -> None:
    order = await repository.get_order(session, event.order_id, for_update=True)
    if order is not None:
        _note(
            session,
            order,
            f"Refund of {event.amount} {event.currency} failed ({event.reason or 'no reason'}); "
            "the money stays owed to the customer",
            at=utcnow(),
        )


# --- timers --------------------------------------------------------------------------------

_TIMER_ACTIONS = {Timer.expire: Action.expire, Timer.auto_complete: Action.auto_complete}
_TIMER_NOTES = {
    Timer.expire: "Not paid in time",
    Timer.auto_complete: "Completed automatically: no answer to the delivery in time",
}


async def fire_due_timers(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, limit: int
) -> int:
    """Fire the timers due now (one transaction, at most `limit`); how many fired."""
    async with sessionmaker() as session, session.begin():
        due = await repository.claim_due_timers(session, now=utcnow(), limit=limit)
        for order in due:
            timer = order.timer or ""
            action = _TIMER_ACTIONS.get(timer)
            try:
                if action is None:
                    raise InvalidTransition(f"unknown timer {timer!r}")
                await _apply(
                    session, settings, order, action, Role.system, None, _TIMER_NOTES[timer]
                )
            except InvalidTransition:
                # Cannot happen while transitions keep timers right; never retry it forever.
                log.error("order %s: timer %s does not apply to %s", order.id, timer, order.status)
                order.timer, order.timer_due_at = None, None
        return len(due)
