"""pytest plugin (entry point `krika`): real PostgreSQL, RabbitMQ, Redis and Mongo-wire for tests.

Where each comes from, in order: the `KRIKA_TEST_*_URL` environment variable; a testcontainers
container when a Docker engine answers; otherwise the local default server. Never a mock.

A service's conftest provides `alembic_ini` (its alembic.ini path); `database_url` is then a
fresh database, migrated by Alembic, dropped at the end of the run. Every test that uses
`session` or `db_engine` leaves the tables empty for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.testing.jwt import TestKeys

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


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
