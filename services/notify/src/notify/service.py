"""notify's use cases: an event's notification to one user (in-app and e-mail, each once, as
their preferences allow), in-app notifications, preferences, one-click unsubscribe, and the
delivery queue as admins see it. Flushes, never commits.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utcnow
from krika_common.events import NotificationCreated, record_event
from krika_common.pagination import Page, keyset_page
from notify.config import Settings
from notify.errors import (
    NotificationNotFound,
    PreferenceLocked,
    RecipientUnknown,
    UnknownKind,
    UnsubscribeLinkInvalid,
)
from notify.kinds import EMAIL_KINDS, IN_APP_KINDS, KINDS, SECURITY
from notify.models import (
    DeliveryStatus,
    EmailDelivery,
    Notification,
    Preference,
    Recipient,
)
from notify.render import Templates
from notify.schemas import DeliveryOut, NotificationOut, PreferencesIn, PreferencesOut

log = logging.getLogger(__name__)

PRODUCER = "notify"
EMAIL, IN_APP = "email", "in_app"


@dataclass
class Notify:
    """What the use cases need (app.state.notify, and the worker's)."""

    settings: Settings
    templates: Templates

    # --- links ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}{path}"

    def preferences_url(self) -> str:
        return self.url("/settings/notifications")

    def _unsubscribe_key(self) -> OctKey:
        return OctKey.import_key(("unsubscribe:" + self.settings.unsubscribe_secret).encode())

    def unsubscribe_token(self, user_id: uuid.UUID, kind: str) -> str:
        payload = json.dumps({"u": str(user_id), "k": kind}, separators=(",", ":")).encode()
        return jws.serialize_compact({"alg": "HS256"}, payload, self._unsubscribe_key())

    def unsubscribe_url(self, user_id: uuid.UUID, kind: str) -> str | None:
        """The one-click link of `kind` for the user (None for security mail)."""
        if kind in SECURITY:
            return None
        base = self.settings.api_public_url.rstrip("/")
        token = quote(self.unsubscribe_token(user_id, kind))
        return f"{base}/api/v1/notifications/unsubscribe?token={token}"

    def read_unsubscribe_token(self, token: str) -> tuple[uuid.UUID, str]:
        try:
            found = jws.deserialize_compact(token, self._unsubscribe_key(), algorithms=["HS256"])
            claims = json.loads(found.payload)
            user_id, kind = uuid.UUID(claims["u"]), str(claims["k"])
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise UnsubscribeLinkInvalid() from exc
        if kind not in KINDS or kind in SECURITY:
            raise UnsubscribeLinkInvalid()
        return user_id, kind

    def base_context(self, user_id: uuid.UUID, name: str, kind: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "recipient_name": name,
            "public_url": self.settings.public_url,
            "preferences_url": self.preferences_url(),
            "unsubscribe_url": self.unsubscribe_url(user_id, kind),
        }


# --- read models --------------------------------------------------------------------------------


async def remember_recipient(
    session: AsyncSession, user_id: uuid.UUID, email: str, full_name: str, roles: list[str] | None
) -> None:
    """The user's address and name (the latest identity said); roles only when given."""
    values: dict[str, Any] = {"email": email, "full_name": full_name, "updated_at": utcnow()}
    stmt = insert(Recipient).values(id=user_id, roles=roles or [], **values)
    if roles is not None:
        values["roles"] = roles
    await session.exec(stmt.on_conflict_do_update(index_elements=["id"], set_=values))


async def recipient(session: AsyncSession, user_id: uuid.UUID) -> Recipient:
    found = await session.get(Recipient, user_id)
    if found is None:
        raise RecipientUnknown(f"user {user_id} is not known yet")
    return found


# --- preferences --------------------------------------------------------------------------------


async def enabled(session: AsyncSession, user_id: uuid.UUID, channel: str, kind: str) -> bool:
    if channel == EMAIL and kind in SECURITY:
        return True
    row = await session.get(Preference, (user_id, channel, kind))
    return True if row is None else row.enabled


async def preferences(session: AsyncSession, user_id: uuid.UUID) -> PreferencesOut:
    rows = (await session.exec(select(Preference).where(Preference.user_id == user_id))).all()
    chosen = {(r.channel, r.kind): r.enabled for r in rows}
    return PreferencesOut(
        email={k: k in SECURITY or chosen.get((EMAIL, k), True) for k in EMAIL_KINDS},
        in_app={k: chosen.get((IN_APP, k), True) for k in IN_APP_KINDS},
        locked=sorted(SECURITY),
    )


async def set_preferences(
    session: AsyncSession, user_id: uuid.UUID, body: PreferencesIn
) -> PreferencesOut:
    """Change the kinds named (the others keep their choice). Security e-mail stays on."""
    changes: list[tuple[str, str, bool]] = []
    for channel, kinds, allowed in (
        (EMAIL, body.email, EMAIL_KINDS),
        (IN_APP, body.in_app, IN_APP_KINDS),
    ):
        for kind, value in kinds.items():
            if kind not in allowed:
                raise UnknownKind(f"{channel}: no such kind {kind!r}")
            if channel == EMAIL and kind in SECURITY and not value:
                raise PreferenceLocked(f"{kind} e-mails cannot be switched off")
            changes.append((channel, kind, value))
    for channel, kind, value in changes:
        await _choose(session, user_id, channel, kind, value)
    return await preferences(session, user_id)


async def _choose(
    session: AsyncSession, user_id: uuid.UUID, channel: str, kind: str, value: bool
) -> bool:
    """Set one preference; whether it changed."""
    stmt = insert(Preference).values(
        user_id=user_id, channel=channel, kind=kind, enabled=value, updated_at=utcnow()
    )
    result = await session.exec(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "channel", "kind"],
            set_={"enabled": value, "updated_at": utcnow()},
            where=col(Preference.enabled) != value,
        ).returning(col(Preference.user_id))
    )
    return result.first() is not None


async def unsubscribe(notify: Notify, session: AsyncSession, token: str) -> tuple[str, bool]:
    """The one-click unsubscribe: e-mails of the link's kind stop. (the kind, whether this
    link changed anything: a second use finds it done)."""
    user_id, kind = notify.read_unsubscribe_token(token)
    return kind, await _choose(session, user_id, EMAIL, kind, False)


# --- an event's notification ------------------------------------------------------------------


async def notify_user(
    notify: Notify,
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    kind: str,
    user_id: uuid.UUID,
    context: dict[str, Any],
    data: dict[str, Any] | None = None,
    to: tuple[str, str] | None = None,
) -> None:
    """Notify one user of one event: an in-app notification (and `notify.notification_created`)
    and an e-mail delivery, each at most once per (event, kind, user), each only if the user
    has not switched it off. `to` (address, name) for e-mails identity addressed itself;
    otherwise the read model's. `context`: the template's own variables."""
    spec = KINDS[kind]
    if to is None:
        found = await recipient(session, user_id)
        to = (found.email, found.full_name)
    address, name = to
    full = notify.base_context(user_id, name, kind) | context
    key = f"{event_id}:{kind}:{user_id}"
    if spec.in_app and await enabled(session, user_id, IN_APP, kind):
        rendered = notify.templates.render(kind, revive(full))
        await add_notification(
            session, key, user_id, kind, rendered.title, rendered.body, data or {}
        )
    if spec.email and await enabled(session, user_id, EMAIL, kind):
        await enqueue_email(session, key, user_id, address, kind, full)


async def add_notification(
    session: AsyncSession,
    key: str,
    user_id: uuid.UUID,
    kind: str,
    title: str,
    body: str,
    data: dict[str, Any],
) -> None:
    stmt = (
        insert(Notification)
        .values(
            id=uuid.uuid4(),
            key=key,
            user_id=user_id,
            kind=kind,
            title=title[:200],
            body=body,
            data=data,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(Notification.id), col(Notification.created_at))
    )
    row = (await session.exec(stmt)).first()
    if row is None:
        return  # this event's notification exists already
    notification_id, created_at = row
    await record_event(
        session,
        NotificationCreated(
            notification_id=notification_id,
            user_id=user_id,
            kind=kind,
            title=title[:200],
            body=body,
            data=data,
            created_at=created_at,
        ),
        producer=PRODUCER,
    )


async def enqueue_email(
    session: AsyncSession,
    key: str,
    user_id: uuid.UUID,
    address: str,
    kind: str,
    context: dict[str, Any],
) -> None:
    """Queue one e-mail (once per key): rendered and sent by the worker."""
    stmt = (
        insert(EmailDelivery)
        .values(
            id=uuid.uuid4(),
            key=key,
            user_id=user_id,
            to_address=address,
            kind=kind,
            context=json.loads(json.dumps(context, default=_json_default)),
            status=DeliveryStatus.pending,
            attempts=0,
            next_attempt_at=utcnow(),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    await session.exec(stmt)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def revive(context: Any, key: str = "") -> Any:
    """A stored context back in the templates' types: `*_at` values are datetimes again."""
    if isinstance(context, dict):
        return {k: revive(v, k) for k, v in context.items()}
    if isinstance(context, list):
        return [revive(v, key) for v in context]
    if isinstance(context, str) and key.endswith("_at"):
        try:
            return datetime.fromisoformat(context)
        except ValueError:
            return context
    return context


# --- in-app -------------------------------------------------------------------------------------


def notification_out(row: Notification) -> NotificationOut:
    return NotificationOut.model_validate(row, from_attributes=True)


async def notifications(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    unread_only: bool,
    cursor: str | None,
    limit: int,
) -> Page[NotificationOut]:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(col(Notification.read_at).is_(None))
    page = await keyset_page(
        session,
        stmt,
        (col(Notification.created_at), col(Notification.id)),
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[notification_out(n) for n in page.items], next_cursor=page.next_cursor)


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        Notification.user_id == user_id, col(Notification.read_at).is_(None)
    )
    return int((await session.exec(stmt)).one())


async def mark_read(
    session: AsyncSession, user_id: uuid.UUID, notification_id: uuid.UUID
) -> NotificationOut:
    """Mark one of the caller's notifications read (again: it keeps its first read time)."""
    row = await session.get(Notification, notification_id, with_for_update=True)
    if row is None or row.user_id != user_id:
        raise NotificationNotFound()
    if row.read_at is None:
        row.read_at = utcnow()
        session.add(row)
        await session.flush()
    return notification_out(row)


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID) -> int:
    result = await session.exec(
        update(Notification)
        .where(
            col(Notification.user_id) == user_id,
            col(Notification.read_at).is_(None),
        )
        .values(read_at=utcnow())
    )
    return int(result.rowcount)


# --- the delivery queue (admins) ----------------------------------------------------------------


async def deliveries(
    session: AsyncSession,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[DeliveryOut]:
    stmt = select(EmailDelivery)
    if status is not None:
        stmt = stmt.where(EmailDelivery.status == status)
    if user_id is not None:
        stmt = stmt.where(EmailDelivery.user_id == user_id)
    page = await keyset_page(
        session,
        stmt,
        (col(EmailDelivery.created_at), col(EmailDelivery.id)),
        cursor=cursor,
        limit=limit,
    )
    return Page(
        items=[DeliveryOut.model_validate(d, from_attributes=True) for d in page.items],
        next_cursor=page.next_cursor,
    )
