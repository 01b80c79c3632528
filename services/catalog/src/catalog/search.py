"""Search over the listed services (published, provider not suspended): one SQL statement.

Matching (`q`): every word of the query (unaccented, lower-cased) must match
`search_document` (English stems; title, tags and description), as a prefix (`photo` finds
"photography") or, for typos, as one of the 3 known title/tag words most similar to it
(trigram similarity >= 0.5 in `catalog_search_words`: `photgraphy` finds "photography").
Both are one tsquery, built once per statement (`catalog_word_query`, see the migration), run
on the GIN index over the listed rows.

Relevance, highest first: 2 when the title or tags match (else 0) + ts_rank on title and tags
(weights A 1.0, B 0.4; under 1) + rating_average / 10 (under 0.5), in `real` arithmetic (the
cursor holds the value exactly: a real round-trips through a Python float's shortest repr).
Ranking only looks at the short title/tags vector, so it costs little per match. `relevance`
without `q` sorts as `newest`.

Filters: `category` (id or slug) includes its whole subtree (a recursive CTE over the small
category table); prices are inclusive bounds on `starting_price` (the cheapest package);
`max_delivery_days` keeps a service when any of its packages delivers within it
(`fastest_delivery_days`); `min_rating` compares with `rating_average` (0 while unrated, so
any positive minimum leaves unrated services out).

Pagination: keyset on (sort value, id) in the sort's direction; the cursor holds the sort name,
the last row's sort value and id. A row's sort value does not depend on other rows, so pages
stay consistent while services are added or removed: nothing is skipped or repeated.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from catalog.schemas import ServiceSummary, SortOrder, average
from krika_common.pagination import InvalidCursor, Page, decode_cursor, encode_cursor

_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 8

# `real` arithmetic throughout: numeric arithmetic and rounding cost as much as the match itself
# (9.7 ms instead of 18 ms for a query with 4,400 matches). A real is exact in a Python float
# and back (shortest repr), so the cursor still holds the value exactly.
_RANK = (
    "(CASE WHEN s.title_document @@ query.tsq THEN 2 ELSE 0 END"
    " + ts_rank('{0.1,0.2,0.4,1.0}', s.title_document, query.tsq)"
    " + s.rating_average::real / 10)"
)
# sort -> (SQL of the sort value, descending?)
_SORTS: dict[str, tuple[str, bool]] = {
    "price_asc": ("s.starting_price", False),
    "price_desc": ("s.starting_price", True),
    "rating": ("s.rating_average", True),
    "newest": ("s.published_at", True),
    "relevance": (_RANK, True),
}
_CAST = {
    "price_asc": "CAST(:after_value AS bigint)",
    "price_desc": "CAST(:after_value AS bigint)",
    "rating": "CAST(:after_value AS numeric)",
    "relevance": "CAST(:after_value AS double precision)",
    "newest": "CAST(:after_value AS timestamptz)",
}
_SUBTREE = """s.category_id IN (
    WITH RECURSIVE subtree(id) AS (
        SELECT id FROM categories WHERE {root}
        UNION ALL
        SELECT c.id FROM categories c JOIN subtree ON c.parent_id = subtree.id
    ) SELECT id FROM subtree)"""


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    max_delivery_days: int | None = None
    min_rating: Decimal | None = None
    provider_id: uuid.UUID | None = None
    sort: SortOrder = "relevance"
    cursor: str | None = None
    limit: int = 20


def query_words(q: str | None) -> list[str]:
    return _WORD.findall(q.lower())[:MAX_WORDS] if q else []


def _after(sort: str, cursor: str) -> tuple[Any, uuid.UUID]:
    name, value, last_id = decode_cursor(cursor, 3)
    if name != sort or not isinstance(value, str | int) or not isinstance(last_id, str):
        raise InvalidCursor()
    try:
        row_id = uuid.UUID(last_id)
        if sort in ("price_asc", "price_desc"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidCursor()
            return value, row_id
        if sort == "newest":
            when = datetime.fromisoformat(str(value))
            if when.tzinfo is None:
                raise InvalidCursor()
            return when, row_id
        if sort == "relevance":
            score = float(value)
            if not math.isfinite(score):
                raise InvalidCursor()
            return score, row_id
        number = Decimal(str(value))
        if not number.is_finite():
            raise InvalidCursor()
        return number, row_id
    except (ValueError, InvalidOperation) as exc:
        raise InvalidCursor() from exc


def build(query: SearchQuery) -> tuple[str, dict[str, Any], str]:
    """The statement, its parameters and the effective sort."""
    words = query_words(query.q)
    sort: str = query.sort
    if sort == "relevance" and not words:
        sort = "newest"
    where = ["s.listed"]
    params: dict[str, Any] = {"limit": query.limit + 1}
    prefix, tables = "", "services s"
    if words:
        terms = []
        for i, word in enumerate(words):
            params[f"w{i}"] = word
            terms.append(f"catalog_word_query(catalog_fold(:w{i}))")
        # Materialised: the tsquery (and its typo look-ups) is computed once per statement.
        prefix = f"WITH query AS MATERIALIZED (SELECT {' && '.join(terms)} AS tsq) "
        tables = "services s, query"
        where.append("s.search_document @@ query.tsq")
    if query.category is not None:
        try:
            params["category_id"] = uuid.UUID(query.category)
            where.append(_SUBTREE.format(root="id = :category_id"))
        except ValueError:
            params["category_slug"] = query.category
            where.append(_SUBTREE.format(root="slug = :category_slug"))
    if query.min_price is not None:
        params["min_price"] = query.min_price
        where.append("s.starting_price >= :min_price")
    if query.max_price is not None:
        params["max_price"] = query.max_price
        where.append("s.starting_price <= :max_price")
    if query.max_delivery_days is not None:
        params["max_days"] = query.max_delivery_days
        where.append("s.fastest_delivery_days <= :max_days")
    if query.min_rating is not None:
        params["min_rating"] = query.min_rating
        where.append("s.rating_average >= :min_rating")
    if query.provider_id is not None:
        params["provider_id"] = query.provider_id
        where.append("s.provider_id = :provider_id")
    value, descending = _SORTS[sort]
    if query.cursor is not None:
        params["after_value"], params["after_id"] = _after(sort, query.cursor)
        where.append(f"({value}, s.id) {'<' if descending else '>'} ({_CAST[sort]}, :after_id)")
    direction = "DESC" if descending else "ASC"
    # Every fragment is a constant of this module; values are bound parameters.
    columns = (
        "s.id, s.title, s.provider_id, s.category_id, s.starting_price, s.currency,"
        f" s.rating_average, s.rating_count, s.published_at, {value} AS sort_value"
    )
    conditions = " AND ".join(where)
    order = f"sort_value {direction}, s.id {direction}"
    sql = f"{prefix}SELECT {columns} FROM {tables} WHERE {conditions} ORDER BY {order} LIMIT :limit"  # noqa: S608
    return sql, params, sort


def _cursor_value(sort: str, value: Any) -> Any:
    if sort in ("price_asc", "price_desc"):
        return int(value)
    if sort == "relevance":
        return repr(float(value))  # shortest exact form
    if sort == "newest":
        return value.isoformat()
    return str(value)


async def search(session: AsyncSession, query: SearchQuery) -> Page[ServiceSummary]:
    sql, params, sort = build(query)
    conn = await session.connection()
    rows = list(await conn.execute(text(sql), params))
    items = [
        ServiceSummary(
            id=r.id,
            title=r.title,
            provider_id=r.provider_id,
            category_id=r.category_id,
            starting_price=r.starting_price,
            currency=r.currency,
            rating_average=average(r.rating_average, r.rating_count),
            rating_count=r.rating_count,
            published_at=r.published_at,
        )
        for r in rows[: query.limit]
    ]
    next_cursor = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        next_cursor = encode_cursor(sort, _cursor_value(sort, last.sort_value), str(last.id))
    return Page(items=items, next_cursor=next_cursor)
