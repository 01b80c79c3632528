"""Where the tests' servers come from: PostgreSQL, RabbitMQ, Redis and the Mongo-wire server.

In order: the `KRIKA_TEST_*_URL` environment variable; a testcontainers container when a
Docker engine answers (`KRIKA_TEST_NO_DOCKER=1` skips the probe); otherwise the local default
server. Never a mock. Also the run's identity (`run_id`), which names everything a run creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from krika_common.server import free_port

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
        # Its own pid and log files: by default every instance shares /tmp's, and a second
        # one (another test run, `make up`) refuses to start.
        argv = [str(exe), "--host", "127.0.0.1", "--port", str(port), "--data-dir", data]
        argv += ["--pid-file", f"{data}/nx.pid", "--log-file", f"{data}/nx.log"]
        proc = subprocess.Popen(  # noqa: S603 - our own venv's console script
            argv,
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


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """Redis on the test database index, flushed before each test."""
    client: Redis = Redis.from_url(redis_url, decode_responses=False)
    await client.flushdb()
    yield client
    await client.aclose()
