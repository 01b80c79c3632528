"""The backing servers: PostgreSQL, Redis and RabbitMQ answer, or a stopped local one is started."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from krika_common.config import redact_url
from krika_common.server import port_open
from krika_dev.console import console
from krika_dev.plan import DEFAULT_POSTGRES, LOCAL, ROOT, App, SetupError


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def libpq_url(url: str, database: str) -> str:
    parts = urlsplit(re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url))
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


async def _check_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(libpq_url(url, "postgres"), timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def _check_redis(url: str) -> None:
    from redis.asyncio import Redis

    client: Redis = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        if not await client.ping():
            raise RuntimeError("PING did not answer PONG")
    finally:
        await client.aclose()


async def _check_rabbitmq(url: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    await connection.close()


def _start_postgres() -> list[str] | None:
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not clusters.is_dir():
        return None
    versions = sorted(
        (d.name for d in clusters.iterdir() if (d / "main").is_dir()),
        key=lambda v: [int(x) for x in re.findall(r"\d+", v)],
    )
    if not versions:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]


def _start_redis(port: int) -> list[str] | None:
    if shutil.which("redis-server") is None:
        return None
    return [
        "redis-server",
        "--daemonize", "yes",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip


def _start_rabbitmq(port: int) -> list[str] | None:
    if shutil.which("rabbitmq-server") is None:
        return None
    return ["rabbitmq-server", "-detached"]


@dataclass(frozen=True)
class Backing:
    name: str
    default_port: int
    check: Callable[[str], Awaitable[None]]
    start: Callable[[int], list[str] | None]
    boot_seconds: float
    install: str


BACKINGS: dict[str, Backing] = {
    "postgres": Backing(
        "PostgreSQL",
        5432,
        _check_postgres,
        lambda _port: _start_postgres(),
        30,
        "install PostgreSQL 15+ (Debian/Ubuntu: `apt-get install postgresql`) or point "
        "POSTGRES_URL (or <SVC>_DATABASE_URL) at a running server",
    ),
    "redis": Backing(
        "Redis",
        6379,
        _check_redis,
        _start_redis,
        15,
        "install Redis 7 (`apt-get install redis-server`) or point REDIS_URL at a running server",
    ),
    "rabbitmq": Backing(
        "RabbitMQ",
        5672,
        _check_rabbitmq,
        _start_rabbitmq,
        120,
        "install RabbitMQ 3.10+ (`apt-get install rabbitmq-server`) or point AMQP_URL at a "
        "running broker",
    ),
}


def infra_targets(env: Mapping[str, str], apps: list[App]) -> dict[str, set[str]]:
    """Every distinct server URL the processes will use, per kind of backing server."""
    targets: dict[str, set[str]] = {"postgres": set(), "redis": set(), "rabbitmq": set()}
    for app in apps:
        p = app.prefix
        if app.migrations:
            targets["postgres"].add(env[f"{p}DATABASE_URL"])
        targets["redis"].add(env[f"{p}REDIS_URL"])
        targets["rabbitmq"].add(env[f"{p}AMQP_URL"])
    if not targets["postgres"]:
        targets["postgres"].add(env.get("POSTGRES_URL", DEFAULT_POSTGRES))
    return targets


async def _probe(kind: Backing, url: str) -> str | None:
    """None when the server answers its protocol, else why not."""
    try:
        await asyncio.wait_for(kind.check(url), timeout=10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return None


async def ensure_backing(kind: Backing, url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or kind.default_port
    where = f"{kind.name} at {host}:{port}"
    listening = await asyncio.to_thread(port_open, host, port)
    if listening:
        problem = await _probe(kind, url)
        if problem is None:
            console.say(f"{kind.name:<10} {host}:{port} ok")
            return
        raise SetupError(
            f"{where} is listening but does not answer as expected ({problem}); "
            f"check the URL and credentials ({redact_url(url)})"
        )
    if not _is_local(host):
        state = "is not on this machine, so it is not started here"
    elif port != kind.default_port:
        state = f"is not on the default port {kind.default_port}, so it is not started here"
    else:
        state = "is not installed here"
    command = kind.start(port) if state == "is not installed here" else None
    if command is None:
        raise SetupError(f"{where} is not reachable and {state}: {kind.install}")
    console.say(f"{kind.name:<10} not running; starting it: {shlex.join(command)}")
    # Output to a file, not a pipe: a daemon that keeps the pipe open would hang the read.
    log = LOCAL / "run" / f"start-{kind.name.lower()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            started = await asyncio.to_thread(
                subprocess.run,  # a fixed command from the BACKINGS table
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=120,
            )
            code: int | str = started.returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            code = type(exc).__name__
    if code != 0:
        tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise SetupError(
            f"{where} is down and `{shlex.join(command)}` failed ({code}: {tail}); "
            f"start it by hand (full output in {log.relative_to(ROOT)})"
        )
    deadline = time.monotonic() + kind.boot_seconds
    last = "not listening"
    while time.monotonic() < deadline:
        if await asyncio.to_thread(port_open, host, port):
            answer = await _probe(kind, url)
            if answer is None:
                console.say(f"{kind.name:<10} {host}:{port} started")
                return
            last = answer
        await asyncio.sleep(0.5)
    raise SetupError(
        f"{where} was started but did not answer within {kind.boot_seconds:.0f}s ({last})"
    )


async def ensure_infra(env: Mapping[str, str], apps: list[App]) -> None:
    """Check every backing server; start a stopped local one; fail naming everything missing."""
    problems: list[str] = []
    for key, urls in infra_targets(env, apps).items():
        servers: dict[tuple[str | None, int | None], str] = {}
        for url in sorted(urls):  # one check per server, whichever database or vhost
            servers.setdefault((urlsplit(url).hostname, urlsplit(url).port), url)
        for url in servers.values():
            try:
                await ensure_backing(BACKINGS[key], url)
            except SetupError as exc:
                problems.append(str(exc))
    if problems:
        raise SetupError("backing servers missing:\n  - " + "\n  - ".join(problems))
