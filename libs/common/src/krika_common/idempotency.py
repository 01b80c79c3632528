"""`Idempotency-Key` for state-changing POSTs, as Stripe defines it: a retried request with the
same key gets the first answer again instead of doing the work twice.

A service uses it in the endpoint, around the use case (orders, payments, ledger):

    @router.post(
        "/orders",
        status_code=201,
        response_model=OrderOut,
        responses=responses(*IDEMPOTENCY_ERRORS, ProviderNotFound),
    )
    async def place_order(
        body: PlaceOrderIn,
        request: Request,
        user: CurrentUser,
        session: SessionDep,
        _key: IdempotencyKeyHeader = None,  # only documents the header in OpenAPI
    ) -> Response:
        \"\"\"Place an order; a retry with the same `Idempotency-Key` gets the first answer.\"\"\"

        async def run() -> OrderOut:
            return OrderOut.model_validate(await service.place_order(session, user.id, body))

        return await idempotent(request, session, scope=str(user.id), body=body, run=run)

The service's migration creates the table (the lib has no migrations; like `outbox`/`inbox`),
either `op.create_table(...)` as autogenerate writes it from `IdempotencyKey`, or exactly:

    CREATE TABLE idempotency_keys (
        scope VARCHAR(100) NOT NULL,
        key VARCHAR(255) NOT NULL,
        request_hash VARCHAR(64) NOT NULL,
        status_code INTEGER NOT NULL,
        response_body BYTEA NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT pk_idempotency_keys PRIMARY KEY (scope, key)
    );
    CREATE INDEX ix_idempotency_keys_created_at ON idempotency_keys (created_at);

Importing this module registers the table in `SQLModel.metadata` (nothing else in the lib
imports it), so a service that uses it has autogenerate write that table, and a service that
does not never sees it. Its worker prunes expired keys with
`run_retention(..., idempotency_keys=True)` (krika_common.events.retention).

What `idempotent(...)` does, in the request's transaction (the session of `SessionDep`):
1. The header: missing → 400 `idempotency_key_missing` (unless `required=False`, which then
   just runs the use case); empty, over 255 characters, anything but printable ASCII, or sent
   twice → 400 `invalid_idempotency_key`.
2. `pg_try_advisory_xact_lock` on a 64-bit hash of (scope, key): not acquired → 409
   `request_in_progress` (with `Retry-After`): a request with this key is running. The lock is
   held until that request's transaction ends, i.e. after its stored answer is committed (the
   session commits before the response is sent), and PostgreSQL releases it only once the
   commit is visible; so a request holding the lock sees every committed answer for its key
   and two requests with one key never both run the use case.
3. The stored row for (scope, key), if younger than `KEY_TTL`: same request hash → the stored
   status and body bytes again, with `Idempotent-Replayed: true`, the use case not run; another
   hash → 422 `idempotency_key_reused`. An expired row is deleted and the request is new.
4. Otherwise the use case runs; its result is serialised once (JSON by alias, as FastAPI would)
   and stored in the same transaction as its effects: both commit, or neither.

The request hash is sha256 over the method, the path, the query parameters (sorted) and the
canonical JSON of the parsed body (`model_dump(mode="json")`, sorted keys, compact): the same
key on another path or with another body is a reuse; key order and whitespace of the JSON sent
do not matter, and neither does leaving out a field that has a default.

Limits and choices:
- Only successes are stored. A use case that raises stores nothing: its effects roll back with
  it, so a retry with the key runs again (Stripe also stores some errors; here nothing
  happened, so running again is consistent). An error with `keeps_changes` commits its own
  changes but still stores no answer.
- Only the status and the body are replayed, not headers of the first answer (e.g. Location).
- Keys: at most 255 printable ASCII characters; `scope` (the caller, e.g. the user id) at most
  100. Keys are kept `KEY_TTL` (24 h); after that the same key is a new request.
- Assumes READ COMMITTED (PostgreSQL's default): under REPEATABLE READ a snapshot taken before
  the lock could miss the first request's answer (its INSERT would then fail on the key).
- Return the response model from `run` (or pass `response_model=`): a table row would be
  stored with every field it has.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Header, Request, Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Column, Integer, LargeBinary, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.db import utc_field, utcnow
from krika_common.errors import BadRequest, Conflict, ServiceError

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
MAX_SCOPE_LENGTH = 100

# For an endpoint's signature: documents the header in OpenAPI; `idempotent` reads it itself
# (FastAPI would answer a missing required header with a 422, not our 400).
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description=(
            "A unique key per operation (at most 255 printable ASCII characters): a retry with "
            "the same key and body answers the first result again, for 24 hours."
        ),
    ),
]


class IdempotencyKey(SQLModel, table=True):
    """The answer given to the first request with a key; its effects committed with it."""

    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=MAX_SCOPE_LENGTH)
    key: str = Field(primary_key=True, max_length=MAX_KEY_LENGTH)
    request_hash: str = Field(max_length=64)
    status_code: int = Field(sa_column=Column(Integer, nullable=False))
    response_body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = utc_field(index=True)


class IdempotencyKeyMissing(BadRequest):
    code = "idempotency_key_missing"
    message = "This request needs an Idempotency-Key header"


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"
    message = "The Idempotency-Key must be one header of 1 to 255 printable ASCII characters"


class IdempotencyKeyReused(ServiceError):
    status = 422
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was used with another request; use a new key"


class RequestInProgress(Conflict):
    code = "request_in_progress"
    message = "A request with this Idempotency-Key is still running; retry shortly"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


IDEMPOTENCY_ERRORS: tuple[type[ServiceError], ...] = (
    IdempotencyKeyMissing,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    RequestInProgress,
)

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")


def idempotency_key(request: Request) -> str | None:
    """The request's key, checked; None when it sent none."""
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidIdempotencyKey("Send one Idempotency-Key header")
    (value,) = values
    if not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"An Idempotency-Key has 1 to {MAX_KEY_LENGTH} characters")
    if not all(" " <= char <= "~" for char in value):
        raise InvalidIdempotencyKey("An Idempotency-Key is printable ASCII")
    return value


def request_hash(request: Request, body: BaseModel | None) -> str:
    """sha256 (hex) of what makes two requests the same one: method, path, query, body."""
    canonical = json.dumps(
        {
            "method": request.method,
            "path": request.url.path,
            "query": sorted(request.query_params.multi_items()),
            "body": body.model_dump(mode="json") if body is not None else None,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_key(scope: str, key: str) -> int:
    """The advisory lock of (scope, key): a signed 64-bit hash, apart from other lock users."""
    digest = hashlib.blake2b(
        f"{scope}\x00{key}".encode(), digest_size=8, person=b"krika.idempotent"
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def _json_response(
    content: bytes, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content, status_code=status_code, media_type="application/json", headers=headers
    )


async def idempotent(
    request: Request,
    session: AsyncSession,
    *,
    scope: str,
    body: BaseModel | None,
    run: Callable[[], Awaitable[BaseModel]],
    status_code: int = 201,
    required: bool = True,
    response_model: type[BaseModel] | None = None,
) -> Response:
    """Run `run` once per (scope, Idempotency-Key) and answer its JSON result with
    `status_code`; a replay answers the stored result (see the module docstring).

    `session` is the request's (it commits at the edge); `scope` is the caller; `body` the
    parsed request body; `required=False` runs without storing when no key is sent;
    `response_model` validates `run`'s result (e.g. a table row) into the answer's schema.
    """
    key = idempotency_key(request)
    if key is None:
        if required:
            raise IdempotencyKeyMissing
        return _json_response(await _serialise(run, response_model), status_code)
    if len(scope) > MAX_SCOPE_LENGTH:
        raise ValueError(f"an idempotency scope has at most {MAX_SCOPE_LENGTH} characters")

    conn = await session.connection()
    if not (await conn.execute(_TRY_LOCK, {"key": lock_key(scope, key)})).scalar_one():
        raise RequestInProgress
    digest = request_hash(request, body)
    query = select(IdempotencyKey).where(
        col(IdempotencyKey.scope) == scope, col(IdempotencyKey.key) == key
    )
    # populate_existing: the row as the database has it now, not as this session last saw it.
    stored = (await session.exec(query.execution_options(populate_existing=True))).one_or_none()
    if stored is not None:
        if stored.created_at > utcnow() - KEY_TTL:
            if stored.request_hash != digest:
                raise IdempotencyKeyReused
            return _json_response(
                stored.response_body, stored.status_code, {REPLAYED_HEADER: "true"}
            )
        await session.delete(stored)
        await session.flush()

    content = await _serialise(run, response_model)
    session.add(
        IdempotencyKey(
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=status_code,
            response_body=content,
        )
    )
    await session.flush()
    return _json_response(content, status_code)


async def _serialise(
    run: Callable[[], Awaitable[BaseModel]], response_model: type[BaseModel] | None
) -> bytes:
    result = await run()
    if response_model is None:
        return result.model_dump_json(by_alias=True).encode()
    # Through the declared type, as FastAPI does: only its fields, even from a subclass or a row.
    adapter = _adapter(response_model)
    return adapter.dump_json(adapter.validate_python(result, from_attributes=True), by_alias=True)


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[BaseModel]:
    return TypeAdapter(model)


_PRUNE = text(
    "DELETE FROM idempotency_keys WHERE (scope, key) IN (SELECT scope, key FROM idempotency_keys "
    "WHERE created_at < :cutoff LIMIT :batch)"
)


async def prune_idempotency_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    older_than: timedelta = KEY_TTL,
    batch: int = 1000,
) -> int:
    """Delete keys older than `older_than`, `batch` rows per transaction; how many went."""
    cutoff = utcnow() - older_than
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            conn = await session.connection()
            result = await conn.execute(_PRUNE, {"cutoff": cutoff, "batch": batch})
            count = int(result.rowcount or 0)
        total += count
        if count < batch:
            return total
