"""Orders routes: parse, authorise, call the use case, answer.

Every order route needs a token. The order's customer and provider see it and act on it by the
rules of orders.states; an admin reads any order and may cancel one that is not final;
anyone else gets 404, as for an order that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile, status

from krika_common.auth import CurrentUser, Principal, require_role
from krika_common.db import SessionDep
from krika_common.errors import NotFound, responses
from krika_common.idempotency import IDEMPOTENCY_ERRORS, IdempotencyKeyHeader, idempotent
from krika_common.pagination import InvalidCursor, Page
from krika_common.schemas import Line
from krika_common.storage import UPLOAD_ERRORS, LinkInvalid, link_response
from orders import service
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
from orders.models import HistoryEntry, Order
from orders.schemas import (
    CancelIn,
    DeliverIn,
    DeliveryOut,
    HistoryOut,
    OrderIn,
    OrderOut,
    Party,
    RevisionIn,
    UploadedOut,
)
from orders.service import Caller, Orders
from orders.states import Action, OrderStatus


def get_orders(request: Request) -> Orders:
    found: Orders = request.app.state.orders
    return found


OrdersDep = Annotated[Orders, Depends(get_orders)]
CustomerDep = Annotated[Principal, Depends(require_role("customer"))]
Limit = Annotated[int, Query(ge=1, le=50)]
Cursor = Annotated[Line | None, Query(max_length=500)]

orders = APIRouter(prefix="/orders", tags=["orders"])


def caller(user: Principal) -> Caller:
    return Caller(user.id, user.roles)


@orders.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses=responses(
        *IDEMPOTENCY_ERRORS, UnknownService, UnknownPackage, ServiceUnavailable, OwnService
    ),
)
async def place_order(
    body: OrderIn,
    request: Request,
    user: CustomerDep,
    session: SessionDep,
    deps: OrdersDep,
    _key: IdempotencyKeyHeader = None,
) -> Response:
    """Customer: order a package of a published service (`Idempotency-Key` required: a retry
    with the same key and body answers the first order again)."""

    async def run() -> OrderOut:
        order = await service.place_order(session, user.id, body, deps.settings)
        return OrderOut.model_validate(order)

    return await idempotent(
        request, session, scope=str(user.id), body=body, run=run, status_code=201
    )


@orders.get("", response_model=Page[OrderOut], responses=responses(InvalidCursor))
async def list_orders(
    user: CurrentUser,
    session: SessionDep,
    as_: Annotated[
        Party | None,
        Query(alias="as", description="Only the orders where you are this party"),
    ] = None,
    status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Page[Order]:
    """Your orders, newest first (an admin without `as` sees every order)."""
    return await service.list_orders(
        session,
        caller(user),
        party=as_,
        status=status_,
        cursor=cursor,
        limit=limit,
    )


@orders.get("/{order_id}", response_model=OrderOut, responses=responses(OrderNotFound))
async def get_order(order_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Order:
    """One of your orders (an admin: any order)."""
    return await service.visible_order(session, order_id, caller(user))


@orders.get(
    "/{order_id}/history", response_model=Page[HistoryOut], responses=responses(OrderNotFound)
)
async def get_history(
    order_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Page[HistoryEntry]:
    """Every transition (and note) of the order, oldest first; the first is the placement."""
    return Page(items=await service.history(session, order_id, caller(user)))


TRANSITION_ERRORS = responses(OrderNotFound, InvalidTransition)


@orders.post("/{order_id}/start", response_model=OrderOut, responses=TRANSITION_ERRORS)
async def start(
    order_id: uuid.UUID, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Order:
    """Provider: start the work on a paid order (delivery is then due in `delivery_days`)."""
    return await service.act(session, deps.settings, caller(user), order_id, Action.start)


@orders.post(
    "/{order_id}/deliver",
    response_model=OrderOut,
    responses=responses(OrderNotFound, InvalidTransition, UnknownAttachment),
)
async def deliver(
    order_id: uuid.UUID, body: DeliverIn, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Order:
    """Provider: hand in the work, with files uploaded to the order first."""
    return await service.deliver(
        session, deps.settings, caller(user), order_id, body.message, body.attachment_ids
    )


@orders.post("/{order_id}/request-revision", response_model=OrderOut, responses=TRANSITION_ERRORS)
async def request_revision(
    order_id: uuid.UUID, body: RevisionIn, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Order:
    """Customer: send a delivery back for changes (at most the package's revisions)."""
    return await service.act(
        session, deps.settings, caller(user), order_id, Action.request_revision, body.note
    )


@orders.post("/{order_id}/complete", response_model=OrderOut, responses=TRANSITION_ERRORS)
async def complete(
    order_id: uuid.UUID, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Order:
    """Customer: accept the delivery (the provider is then paid)."""
    return await service.act(session, deps.settings, caller(user), order_id, Action.complete)


@orders.post("/{order_id}/cancel", response_model=OrderOut, responses=TRANSITION_ERRORS)
async def cancel(
    order_id: uuid.UUID, body: CancelIn, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Order:
    """Cancel: the customer while pending or paid, the provider while paid (before work
    starts), an admin any order not yet final; a paid order is refunded."""
    return await service.act(
        session, deps.settings, caller(user), order_id, Action.cancel, body.reason
    )


@orders.post(
    "/{order_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadedOut,
    responses=responses(OrderNotFound, OrderClosed, TooManyAttachments, *UPLOAD_ERRORS),
)
async def upload_attachment(
    order_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="An image (JPEG, PNG, WebP) or a PDF, ≤ 10 MiB")],
    user: CurrentUser,
    session: SessionDep,
    deps: OrdersDep,
) -> UploadedOut:
    """The order's customer or provider: upload a file (then name it in a delivery)."""
    data = await file.read()
    return await service.add_attachment(session, deps, caller(user), order_id, data)


@orders.get(
    "/{order_id}/deliveries",
    response_model=Page[DeliveryOut],
    responses=responses(OrderNotFound),
)
async def list_deliveries(
    order_id: uuid.UUID, user: CurrentUser, session: SessionDep, deps: OrdersDep
) -> Page[DeliveryOut]:
    """The order's deliveries, oldest first, with links to their files (valid for minutes)."""
    return Page(items=await service.deliveries(session, deps, caller(user), order_id))


@orders.get(
    "/files/{folder}/{name}",
    response_class=Response,
    responses=responses(LinkInvalid, NotFound),
)
async def open_file(
    folder: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=64)],
    deps: OrdersDep,
    expires: Annotated[str, Query(max_length=12)] = "",
    sig: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """A delivery file behind a signed link (what the local store's links point at)."""
    return link_response(*await deps.storage.open_link(f"{folder}/{name}", expires, sig))
