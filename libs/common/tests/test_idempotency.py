"""`Idempotency-Key` on a POST, through a served app against real PostgreSQL: the use case writes
a row (its effect), so "ran once" and "rolled back" are observable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import Column, Identity, Integer, MetaData, Table, Text, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from krika_common.config import KrikaSettings
from krika_common.db import SessionDep, make_sessionmaker, utcnow
from krika_common.errors import Conflict, responses
from krika_common.idempotency import (
    IDEMPOTENCY_ERRORS,
    IDEMPOTENCY_HEADER,
    KEY_TTL,
    REPLAYED_HEADER,
    IdempotencyKey,
    IdempotencyKeyHeader,
    idempotent,
    prune_idempotency_keys,
)
from krika_common.testing.http import serving
from krika_common.web import install_http

# What the use case writes; no unique key, so a use case that ran twice shows as two rows.
_placed = Table(
    "idempotency_test_placed",
    MetaData(),
    Column("id", Integer, Identity(), primary_key=True),
    Column("item", Text, nullable=False),
)


class PlaceIn(BaseModel):
    item: str
    qty: int = 1


class PlacedOut(BaseModel):
    id: int
    item: str
    qty: int


class PlacedRow(PlacedOut):
    """What a use case might return that is more than the answer (like a table row)."""

    internal_note: str = "not for the caller"


class OutOfStock(Conflict):
    code = "out_of_stock"


@dataclass
class UseCase:
    """How the test steers the use case: how often it was called, a gate it waits on, a failure."""

    calls: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    delay: float = 0.0
    fail: bool = False


def make_app(engine: AsyncEngine, use_case: UseCase) -> FastAPI:
    app = FastAPI()
    app.state.sessionmaker = make_sessionmaker(engine)

    async def place(
        request: Request, session: SessionDep, body: PlaceIn, caller: str, **kw: Any
    ) -> Response:
        async def run() -> PlacedRow:
            use_case.calls += 1
            conn = await session.connection()
            new_id = (
                await conn.execute(insert(_placed).values(item=body.item).returning(_placed.c.id))
            ).scalar_one()
            use_case.entered.set()
            if use_case.gate is not None:
                await use_case.gate.wait()
            await asyncio.sleep(use_case.delay)
            if use_case.fail:
                raise OutOfStock
            return PlacedRow(id=new_id, item=body.item, qty=body.qty)

        return await idempotent(
            request, session, scope=caller, body=body, run=run, response_model=PlacedOut, **kw
        )

    @app.post(
        "/orders",
        status_code=201,
        response_model=PlacedOut,
        responses=responses(*IDEMPOTENCY_ERRORS, OutOfStock),
    )
    async def place_order(
        request: Request,
        session: SessionDep,
        body: PlaceIn,
        caller: Annotated[str, Header(alias="X-Caller")],
        _key: IdempotencyKeyHeader = None,
    ) -> Response:
        """Place an order."""
        return await place(request, session, body, caller)

    @app.post("/orders/express", status_code=201, response_model=PlacedOut)
    async def place_express(
        request: Request,
        session: SessionDep,
        body: PlaceIn,
        caller: Annotated[str, Header(alias="X-Caller")],
    ) -> Response:
        """Place an order, faster."""
        return await place(request, session, body, caller)

    @app.post("/orders/optional-key", status_code=200, response_model=PlacedOut)
    async def place_maybe_again(
        request: Request,
        session: SessionDep,
        body: PlaceIn,
        caller: Annotated[str, Header(alias="X-Caller")],
    ) -> Response:
        """Place an order; without a key a retry places another."""
        return await place(request, session, body, caller, status_code=200, required=False)

    install_http(app, KrikaSettings(service_name="idempotency-test"))
    return app


@pytest_asyncio.fixture
async def tables(clean_db: AsyncEngine) -> AsyncEngine:
    """The key table (as a service's migration creates it) and the effect table."""
    key_table = SQLModel.metadata.tables[IdempotencyKey.__tablename__]
    async with clean_db.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=[key_table]))
        await conn.run_sync(_placed.metadata.create_all)
    return clean_db


@pytest.fixture
def use_case() -> UseCase:
    return UseCase()


@pytest_asyncio.fixture
async def client(tables: AsyncEngine, use_case: UseCase) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(make_app(tables, use_case)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def scalar(engine: AsyncEngine, query: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(query))).scalar_one()


async def placed(engine: AsyncEngine) -> int:
    return int(await scalar(engine, "SELECT count(*) FROM idempotency_test_placed"))


async def stored_keys(engine: AsyncEngine) -> int:
    return int(await scalar(engine, "SELECT count(*) FROM idempotency_keys"))


async def post(
    client: httpx.AsyncClient,
    key: str | None,
    body: dict[str, Any] | None = None,
    *,
    caller: str = "user-1",
    path: str = "/orders",
) -> httpx.Response:
    headers = {"X-Caller": caller}
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = key
    return await client.post(path, json=body or {"item": "cake"}, headers=headers)


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


async def test_a_replay_answers_the_stored_response_without_running_again(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    first = await post(client, "k-1", {"item": "cake", "qty": 2})
    assert first.status_code == 201
    assert first.json() == {"id": first.json()["id"], "item": "cake", "qty": 2}
    assert REPLAYED_HEADER not in first.headers

    again = await post(client, "k-1", {"item": "cake", "qty": 2})
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["content-type"] == "application/json"
    assert use_case.calls == 1
    assert await placed(tables) == 1
    assert await stored_keys(tables) == 1


async def test_where_a_key_is_optional_a_request_without_one_just_runs(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    path = "/orders/optional-key"
    first, second = [await post(client, None, path=path) for _ in range(2)]
    assert (first.status_code, second.status_code) == (200, 200)
    assert REPLAYED_HEADER not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert "internal_note" not in first.json()  # the answer is the response model's fields
    assert await stored_keys(tables) == 0

    keyed = await post(client, "k-opt", path=path)
    again = await post(client, "k-opt", path=path)
    assert (again.status_code, again.headers[REPLAYED_HEADER]) == (200, "true")
    assert again.content == keyed.content
    assert "internal_note" not in keyed.json()
    assert use_case.calls == 3
    assert await placed(tables) == 3


async def test_the_body_is_compared_as_json_not_as_bytes(
    client: httpx.AsyncClient, tables: AsyncEngine
) -> None:
    headers = {IDEMPOTENCY_HEADER: "k-json", "X-Caller": "u", "Content-Type": "application/json"}
    first = await client.post("/orders", content=b'{"item": "cake", "qty": 1}', headers=headers)
    for same in (b'{"qty":1,"item":"cake"}', b'{"item":"cake"}'):  # order, spacing, a default
        again = await client.post("/orders", content=same, headers=headers)
        assert (again.status_code, again.headers.get(REPLAYED_HEADER)) == (201, "true")
        assert again.content == first.content
    assert await placed(tables) == 1


async def test_the_same_key_with_another_body_or_path_is_a_reuse(
    client: httpx.AsyncClient, tables: AsyncEngine
) -> None:
    assert (await post(client, "k-2", {"item": "cake"})).status_code == 201
    assert error(await post(client, "k-2", {"item": "pie"})) == (422, "idempotency_key_reused")
    assert error(await post(client, "k-2", {"item": "cake", "qty": 3})) == (
        422,
        "idempotency_key_reused",
    )
    other_path = await post(client, "k-2", {"item": "cake"}, path="/orders/express")
    assert error(other_path) == (422, "idempotency_key_reused")
    assert await placed(tables) == 1


async def test_a_missing_key_is_refused(client: httpx.AsyncClient, tables: AsyncEngine) -> None:
    assert error(await post(client, None)) == (400, "idempotency_key_missing")
    assert await placed(tables) == 0


KEY = IDEMPOTENCY_HEADER.encode()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(KEY, b"k" * 256)], id="over-255"),
        pytest.param([(KEY, b"")], id="empty"),
        pytest.param([(KEY, b"tab\there")], id="tab"),
        pytest.param([(KEY, b"caf\xe9")], id="not-ascii"),
        pytest.param([(KEY, b"a"), (KEY, b"a")], id="sent-twice"),
    ],
)
async def test_a_malformed_key_is_refused(
    client: httpx.AsyncClient, tables: AsyncEngine, headers: list[tuple[bytes, bytes]]
) -> None:
    response = await client.post(
        "/orders", json={"item": "cake"}, headers=[(b"X-Caller", b"u"), *headers]
    )
    assert error(response) == (400, "invalid_idempotency_key")
    assert await placed(tables) == 0


async def test_the_longest_key_and_any_printable_ascii_are_accepted(
    client: httpx.AsyncClient, tables: AsyncEngine
) -> None:
    longest = "k" * 255
    assert (await post(client, longest)).status_code == 201
    assert (await post(client, longest)).headers[REPLAYED_HEADER] == "true"
    assert (await post(client, "a b!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")).status_code == 201
    assert await placed(tables) == 2


async def test_two_callers_with_the_same_key_are_independent(
    client: httpx.AsyncClient, tables: AsyncEngine
) -> None:
    ada = await post(client, "shared", caller="ada")
    bob = await post(client, "shared", caller="bob")
    assert (ada.status_code, bob.status_code) == (201, 201)
    assert REPLAYED_HEADER not in bob.headers
    assert ada.json()["id"] != bob.json()["id"]
    # Another body under bob's scope is no reuse of ada's key.
    assert (await post(client, "shared", {"item": "pie"}, caller="carl")).status_code == 201
    assert await placed(tables) == 3
    assert await stored_keys(tables) == 3


async def test_a_replay_while_the_first_runs_is_409_then_the_stored_answer(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    use_case.gate = gate = asyncio.Event()
    first = asyncio.create_task(post(client, "k-slow"))
    try:
        await asyncio.wait_for(use_case.entered.wait(), 5)
        during = await post(client, "k-slow")
        assert error(during) == (409, "request_in_progress")
        assert during.headers["Retry-After"] == "1"
        # Another key of the same caller is not held up (its use case passes an open gate).
        use_case.gate = None
        assert (await asyncio.wait_for(post(client, "k-other"), 5)).status_code == 201
    finally:
        gate.set()  # or the server would wait for the first request forever
    answered = await first
    assert answered.status_code == 201
    after = await post(client, "k-slow")
    assert (after.status_code, after.content) == (201, answered.content)
    assert after.headers[REPLAYED_HEADER] == "true"
    assert use_case.calls == 2  # k-slow once, k-other once
    assert await placed(tables) == 2


async def test_concurrent_identical_requests_run_the_use_case_once(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    use_case.delay = 0.05  # keep the first one's transaction open while the others arrive
    answers = await asyncio.gather(*(post(client, "k-rush") for _ in range(8)))

    assert use_case.calls == 1
    assert await placed(tables) == 1
    fresh = [a for a in answers if a.status_code == 201 and REPLAYED_HEADER not in a.headers]
    assert len(fresh) == 1
    for answer in answers:
        if answer is fresh[0]:
            continue
        if answer.status_code == 201:
            assert (answer.headers[REPLAYED_HEADER], answer.content) == ("true", fresh[0].content)
        else:
            assert error(answer) == (409, "request_in_progress")


async def test_a_failed_use_case_stores_nothing_and_a_retry_runs(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    use_case.fail = True
    assert error(await post(client, "k-fail")) == (409, "out_of_stock")
    assert use_case.calls == 1
    assert await placed(tables) == 0  # the effect rolled back
    assert await stored_keys(tables) == 0

    use_case.fail = False
    retry = await post(client, "k-fail")
    assert (retry.status_code, retry.headers.get(REPLAYED_HEADER)) == (201, None)
    assert use_case.calls == 2
    assert await placed(tables) == 1


async def test_a_key_is_kept_24_hours_then_the_request_is_new(
    client: httpx.AsyncClient, tables: AsyncEngine, use_case: UseCase
) -> None:
    first = await post(client, "k-old")

    async def age(hours: int) -> None:
        async with tables.begin() as conn:
            await conn.execute(
                text("UPDATE idempotency_keys SET created_at = now() - make_interval(hours => :h)"),
                {"h": hours},
            )

    await age(23)
    kept = await post(client, "k-old")
    assert (kept.headers[REPLAYED_HEADER], kept.content) == ("true", first.content)
    assert use_case.calls == 1

    await age(25)
    # Even another body: the old key no longer binds.
    expired = await post(client, "k-old", {"item": "pie"})
    assert (expired.status_code, expired.headers.get(REPLAYED_HEADER)) == (201, None)
    assert expired.json()["item"] == "pie"
    assert use_case.calls == 2
    assert await placed(tables) == 2
    assert await stored_keys(tables) == 1
    assert await scalar(
        tables, "SELECT created_at > now() - interval '1 hour' FROM idempotency_keys"
    )
    replay = await post(client, "k-old", {"item": "pie"})
    assert (replay.headers[REPLAYED_HEADER], replay.content) == ("true", expired.content)


async def test_pruning_deletes_only_expired_keys(tables: AsyncEngine) -> None:
    now = utcnow()
    maker = make_sessionmaker(tables)
    async with maker() as session, session.begin():
        for n, age in enumerate([25, 25, 25, 48, 23, 1]):
            session.add(
                IdempotencyKey(
                    scope="u",
                    key=f"k{n}",
                    request_hash="0" * 64,
                    status_code=201,
                    response_body=b"{}",
                    created_at=now - timedelta(hours=age),
                )
            )
    assert await prune_idempotency_keys(maker, batch=2) == 4  # several batches
    assert await scalar(
        tables, "SELECT string_agg(key, ',' ORDER BY key) FROM idempotency_keys"
    ) == ("k4,k5")
    assert await prune_idempotency_keys(maker, older_than=KEY_TTL) == 0
    assert await prune_idempotency_keys(maker, older_than=timedelta(hours=2)) == 1


async def test_openapi_documents_the_header_and_the_errors(
    tables: AsyncEngine, use_case: UseCase
) -> None:
    operation = make_app(tables, use_case).openapi()["paths"]["/orders"]["post"]
    assert IDEMPOTENCY_HEADER in [p["name"] for p in operation["parameters"]]
    for status, codes in (
        ("400", ["idempotency_key_missing", "invalid_idempotency_key"]),
        ("409", ["request_in_progress", "out_of_stock"]),
        ("422", ["idempotency_key_reused"]),
    ):
        for code in codes:
            assert code in operation["responses"][status]["description"]
