"""Notifications routes: parse, authorise, call the use case, answer.

Everything is the caller's own (someone else's notification is 404), except the delivery queue
(admins) and the one-click unsubscribe, whose signed link is the credential (public).
"""

from __future__ import annotations

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from krika_common.auth import CurrentUser, Principal, require_role
from krika_common.db import SessionDep
from krika_common.errors import responses
from krika_common.pagination import InvalidCursor, Page
from krika_common.schemas import Line
from notify import service
from notify.errors import (
    NotificationNotFound,
    PreferenceLocked,
    UnknownKind,
    UnsubscribeLinkInvalid,
)
from notify.kinds import KINDS
from notify.models import DeliveryStatus
from notify.schemas import (
    DeliveryOut,
    NotificationOut,
    PreferencesIn,
    PreferencesOut,
    ReadAllOut,
    UnreadOut,
)
from notify.service import Notify


def get_notify(request: Request) -> Notify:
    found: Notify = request.app.state.notify
    return found


NotifyDep = Annotated[Notify, Depends(get_notify)]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
Limit = Annotated[int, Query(ge=1, le=50)]
Cursor = Annotated[Line | None, Query(max_length=500)]
Token = Annotated[str, Query(min_length=10, max_length=1000)]

notifications = APIRouter(prefix="/notifications", tags=["notifications"])


@notifications.get("", response_model=Page[NotificationOut], responses=responses(InvalidCursor))
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread_only: bool = False,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Page[NotificationOut]:
    """Your in-app notifications, newest first."""
    return await service.notifications(
        session, user.id, unread_only=unread_only, cursor=cursor, limit=limit
    )


@notifications.get("/unread-count", response_model=UnreadOut)
async def unread_count(user: CurrentUser, session: SessionDep) -> UnreadOut:
    """How many of your notifications are unread."""
    return UnreadOut(count=await service.unread_count(session, user.id))


@notifications.post(
    "/{notification_id}/read",
    response_model=NotificationOut,
    responses=responses(NotificationNotFound),
)
async def mark_read(
    notification_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> NotificationOut:
    """Mark one of your notifications read."""
    return await service.mark_read(session, user.id, notification_id)


@notifications.post("/read-all", response_model=ReadAllOut)
async def mark_all_read(user: CurrentUser, session: SessionDep) -> ReadAllOut:
    """Mark all your notifications read; how many were unread."""
    return ReadAllOut(updated=await service.mark_all_read(session, user.id))


@notifications.get("/preferences", response_model=PreferencesOut)
async def get_preferences(user: CurrentUser, session: SessionDep) -> PreferencesOut:
    """Which kinds reach you by e-mail and in the app (all on by default)."""
    return await service.preferences(session, user.id)


@notifications.put(
    "/preferences",
    response_model=PreferencesOut,
    responses=responses(UnknownKind, PreferenceLocked),
)
async def put_preferences(
    body: PreferencesIn, user: CurrentUser, session: SessionDep
) -> PreferencesOut:
    """Switch kinds on or off (those not named keep their choice); security e-mails
    (verification, password reset) stay on."""
    return await service.set_preferences(session, user.id, body)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; '
        f'padding: 0 1rem; line-height: 1.5"><h1>{html.escape(title)}</h1>{body}</body></html>'
    )


@notifications.get(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=responses(UnsubscribeLinkInvalid),
)
async def unsubscribe_page(token: Token, deps: NotifyDep) -> HTMLResponse:
    """The page an unsubscribe link opens: one button (a GET changes nothing: mail scanners
    open links)."""
    _, kind = deps.read_unsubscribe_token(token)
    label = html.escape(KINDS[kind].label)
    form = (
        f"<p>Stop e-mails about <strong>{label}</strong>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(_page("Unsubscribe", form))


@notifications.post(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=responses(UnsubscribeLinkInvalid),
)
async def unsubscribe(token: Token, session: SessionDep, deps: NotifyDep) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click`),
    no login: e-mails of the link's kind stop. Using it again changes nothing."""
    kind, changed = await service.unsubscribe(deps, session, token)
    label = html.escape(KINDS[kind].label)
    done = "You will no longer get" if changed else "You had already stopped"
    settings = html.escape(deps.preferences_url(), quote=True)
    body = (
        f"<p>{done} e-mails about <strong>{label}</strong>.</p>"
        f'<p><a href="{settings}">Manage all your notifications</a></p>'
    )
    return HTMLResponse(_page("Unsubscribed", body))


@notifications.get(
    "/deliveries", response_model=Page[DeliveryOut], responses=responses(InvalidCursor)
)
async def list_deliveries(
    _: AdminDep,
    session: SessionDep,
    status: DeliveryStatus | None = None,
    user_id: uuid.UUID | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[DeliveryOut]:
    """Admins: the e-mail delivery queue, newest first (status, attempts, last error)."""
    return await service.deliveries(
        session, status=status, user_id=user_id, cursor=cursor, limit=limit
    )
