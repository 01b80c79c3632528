"""Lists: keyset pagination behind an opaque cursor, in one place.

`keyset_page(session, stmt, keys, cursor=..., limit=...)` orders `stmt` by `keys` (newest
first by default), continues after the row the cursor names, and answers a `Page` of at most
`limit` rows with the cursor of the next page (or None). The cursor is the last row's key
values, JSON in URL-safe base64: opaque to clients, checked on the way back (a cursor that does
not decode into the keys' types is 400 `invalid_cursor`). Keys must be unique together (end
with the primary key), so no row is skipped or repeated between pages.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, tuple_
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.errors import BadRequest


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    message = "The cursor is not valid"


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor()
    return values


def _typed(key: ColumnElement[Any], value: Any) -> Any:
    """A cursor value back in its column's Python type."""
    kind = key.type.python_type
    try:
        if kind is datetime:
            return datetime.fromisoformat(value)
        if kind is uuid.UUID:
            return uuid.UUID(value)
        if kind in (int, str) and isinstance(value, kind) and not isinstance(value, bool):
            return value
    except (TypeError, ValueError) as exc:
        raise InvalidCursor() from exc
    raise InvalidCursor()


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    keys: Sequence[Any],  # mapped columns, e.g. (col(User.created_at), col(User.id))
    *,
    cursor: str | None,
    limit: int,
    descending: bool = True,
) -> Page[Any]:
    """One page of `stmt`'s rows ordered by `keys`, after the row `cursor` names."""
    if cursor is not None:
        after = [
            _typed(key, value)
            for key, value in zip(keys, decode_cursor(cursor, len(keys)), strict=True)
        ]
        position = tuple_(*keys)
        stmt = stmt.where(position < tuple_(*after) if descending else position > tuple_(*after))
    stmt = stmt.order_by(*(key.desc() if descending else key.asc() for key in keys))
    rows = list((await session.exec(stmt.limit(limit + 1))).all())  # type: ignore[call-overload]
    if len(rows) <= limit:
        return Page(items=rows)
    last = rows[limit - 1]
    values = [getattr(last, str(key.key)) for key in keys]  # each key is a mapped column
    return Page(items=rows[:limit], next_cursor=encode_cursor(*values))
