"""pytest plugin (entry point `krika`): real PostgreSQL, RabbitMQ, Redis and Mongo-wire for tests.

Where each comes from, in order: the `KRIKA_TEST_*_URL` environment variable; a testcontainers
container when a Docker engine answers; otherwise the local default server. Never a mock.

A service's conftest provides `alembic_ini` (its alembic.ini path); `database_url` is then a
fresh database, migrated by Alembic, dropped at the end of the run. Every test that uses
`session` or `db_engine` leaves the tables empty for the next one.

Events: `event_bus_factory` makes buses on this run's exchange, `events_observer` sees what is
published on it, `amqp_proxy` is a path to the broker that a test can cut (`disable()`) and
restore (`enable()`); `eventually(...)` polls a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp

from krika_common.config import HttpLimits
from krika_common.server import free_port, uvicorn_options
from krika_common.testing.jwt import TestKeys

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

    from krika_common.events import Envelope, EventBus

LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_REDIS = "redis://127.0.0.1:6379/15"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if os.environ.get("KRIKA_TEST_NO_DOCKER") or docker is None:
        return False
    try:
        probe = subprocess.run(  # noqa: S603 - fixed arguments
            [docker, "info"], capture_output=True, timeout=5, check=False
        )
        return probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def run_id(worker_id: str) -> str:
    """Unique per test run and xdist worker: names databases, exchanges, queues."""
    return f"{uuid.uuid4().hex[:8]}{'' if worker_id == 'master' else '_' + worker_id}"


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    wid = getattr(request.config, "workerinput", {}).get("workerid")
    return str(wid or "master")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server URL without a database name (asyncpg driver)."""
    if url := os.environ.get("KRIKA_TEST_POSTGRES_URL"):
        yield url.rstrip("/")
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as pg:
            yield pg.get_connection_url().rsplit("/", 1)[0]
    else:
        yield LOCAL_POSTGRES


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    if url := os.environ.get("KRIKA_TEST_AMQP_URL"):
        yield url
    elif _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-alpine") as mq:
            params = mq.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
    else:
        yield LOCAL_AMQP


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("KRIKA_TEST_REDIS_URL"):
        yield url
    elif _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as rc:
            yield f"redis://{rc.get_container_host_ip()}:{rc.get_exposed_port(6379)}/0"
    else:
        yield LOCAL_REDIS


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """MONGODB_URL when set, else an `nx-27017` Mongo-wire server started for this run."""
    if url := os.environ.get("KRIKA_TEST_MONGODB_URL"):
        yield url
        return
    exe = Path(sys.executable).with_name("nx-27017")
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(  # noqa: S603 - our own venv's console script
            [str(exe), "--host", "127.0.0.1", "--port", str(port), "--data-dir", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                time.sleep(0.1)
            yield f"mongodb://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(f"{server_url}/postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{server_url}/{name}"


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(f"{server_url}/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def alembic_upgrade(alembic_ini: Path, database_url: str, revision: str = "head") -> None:
    cfg = Config(str(alembic_ini))
    cfg.set_main_option("script_location", str(alembic_ini.parent / "migrations"))
    cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    """Overridden by each service's conftest with the path of its alembic.ini."""
    raise pytest.UsageError("define an `alembic_ini` fixture in the service's conftest.py")


@pytest_asyncio.fixture(scope="session")
async def database_url(
    postgres_server_url: str, alembic_ini: Path, run_id: str
) -> AsyncIterator[str]:
    """A fresh database for this run, migrated with the service's Alembic migrations."""
    name = f"test_{alembic_ini.parent.name}_{run_id}"
    url = await create_database(postgres_server_url, name)
    try:
        # Alembic's env runs its own event loop: keep it off ours.
        await asyncio.to_thread(alembic_upgrade, alembic_ini, url)
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest_asyncio.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


async def truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        tables = [f'"{r[0]}"' for r in rows]
        if tables:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest_asyncio.fixture
async def clean_db(db_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The migrated database, emptied after the test."""
    yield db_engine
    await truncate_all(db_engine)


@pytest_asyncio.fixture
async def session(clean_db: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(clean_db, expire_on_commit=False) as s:
        yield s


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """Redis on the test database index, flushed before each test."""
    client: Redis = Redis.from_url(redis_url, decode_responses=False)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def events_exchange(run_id: str) -> str:
    """A topic exchange of this run's own, so parallel runs never see each other's events."""
    return f"krika.events.test.{run_id}"


@pytest.fixture(scope="session")
def test_keys() -> TestKeys:
    return TestKeys()


@pytest.fixture
def mint_token(test_keys: TestKeys) -> Callable[..., str]:
    return test_keys.mint


@contextlib.asynccontextmanager
async def app_client(
    app: FastAPI, base_url: str = "http://testserver", **kw: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the ASGI app, with the app's lifespan running around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, **kw) as client:
            yield client


class TcpProxy:
    """A local TCP forwarder to a server that a test can switch off (dropping live connections,
    refusing new ones) and on again: a broker outage without touching the broker."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.enabled = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        from yarl import URL

        return str(URL(url).with_host("127.0.0.1").with_port(self.port))

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def disable(self) -> None:
        """Drop every live connection; new ones are closed as soon as they are accepted."""
        self.enabled = False
        self.drop_connections()

    def enable(self) -> None:
        self.enabled = True

    def drop_connections(self) -> None:
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.disable()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@pytest_asyncio.fixture
async def amqp_proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A switchable proxy to the test broker; connect through `amqp_proxy.url_for(amqp_url)`."""
    from yarl import URL

    target = URL(amqp_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5672).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest_asyncio.fixture(scope="session")
async def _events_exchange_cleanup(amqp_url: str, events_exchange: str) -> AsyncIterator[None]:
    """Deletes this run's events exchange at the end of the session."""
    yield
    import aio_pika

    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(events_exchange)


@pytest_asyncio.fixture
async def event_bus_factory(
    amqp_url: str, events_exchange: str, run_id: str, _events_exchange_cleanup: None
) -> AsyncIterator[Callable[..., EventBus]]:
    """Makes `EventBus`es on this run's exchange, each with its own short-lived queues (the
    caller subscribes, connects and starts them); all are closed after the test.

    `make(service="test", *, url=None, **EventBus kwargs)`.
    """
    from krika_common.events import EventBus

    buses: list[EventBus] = []

    def make(service: str = "test", *, url: str | None = None, **kw: Any) -> EventBus:
        kw.setdefault("exchange", events_exchange)
        kw.setdefault("queue", f"{service}.events.test.{run_id}.{uuid.uuid4().hex[:8]}")
        kw.setdefault("queue_expires", 120)
        kw.setdefault("reconnect_interval", 0.2)
        kw.setdefault("publish_timeout", 2.0)
        kw.setdefault("retry_delays", (0.05, 0.1))
        bus = EventBus(url or amqp_url, service=service, **kw)
        buses.append(bus)
        return bus

    yield make
    for bus in reversed(buses):
        await bus.close()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, limits: HttpLimits | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app (real sockets) on a free local port, as `krika_common.server.serve`
    would (same protocol and limits); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, **uvicorn_options(limits or HttpLimits()))
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(
    condition: Callable[[], object],
    *,
    within: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll `condition()` (sync or async) until truthy; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)


class EventsObserver:
    """Every message published on the run's events exchange while the fixture is alive."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def envelopes(self, event_type: str | None = None) -> list[Envelope]:
        from krika_common.events import Envelope

        found = [Envelope.model_validate_json(m.body) for m in self.messages]
        return [e for e in found if event_type is None or e.type == event_type]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        await eventually(
            lambda: len(self.messages) >= count, within=within, what=f"{count} event(s)"
        )


@pytest_asyncio.fixture
async def events_observer(amqp_url: str, events_exchange: str) -> AsyncIterator[EventsObserver]:
    """Sees what is published on `events_exchange` (a queue of its own bound to `#`)."""
    import aio_pika

    observer = EventsObserver()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        await queue.consume(observer._on_message, no_ack=True)
        yield observer


async def queue_depth(amqp_url: str, name: str) -> int:
    """Ready (not in-flight) messages in the queue `name`, asked on a connection of its own."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
