"""Krika's one-command developer run (`make up`) and the infrastructure check CI shares.

    python scripts/dev.py up            every service, worker and the gateway, until Ctrl-C
    python scripts/dev.py ensure-infra  PostgreSQL, Redis and RabbitMQ answer (started if local)
    python scripts/dev.py migrate       infra, dev secrets, databases and migrations, then exit

`up` checks the backing servers (and starts a stopped local one), starts the Mongo-wire server
`nx-27017` when MONGODB_URL is unset, generates development secrets once into `.local/`, creates
the `krika_<service>` databases, runs every service's migrations, then runs every process with
its output prefixed by its name. Ctrl-C or SIGTERM stops them all and exits 0; a process that dies
on its own stops everything and exits 1.

Services are discovered, not listed: `services/<name>/pyproject.toml` makes a service,
`services/<name>/alembic.ini` gives it migrations, `services/<name>/src/<name>/worker.py` a
worker. The only table to edit when a service is added is PORTS.

Every value computed here is a default: a variable already set in the environment wins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from krika_common.config import redact_url
from krika_common.server import free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
SIGNING_KEY = LOCAL / "keys" / "identity-signing.pem"
# notify's key for the one-time links identity seals into its events (P-256).
LINK_KEY = LOCAL / "keys" / "notify-links.pem"
SECRETS_ENV = LOCAL / "secrets.env"

# The one port table. A directory under services/ without an entry here is an error, so a new
# service cannot silently take someone else's port.
PORTS: dict[str, int] = {
    "gateway": 8000,
    "identity": 8001,
    "catalog": 8002,
    "orders": 8003,
    "payments": 8004,
    "ledger": 8005,
    "chat": 8006,
    "notify": 8007,
}
# `<svc>.worker` serves its own /healthz and /metrics on the service's port + 1000
# (identity-worker: 9001); exported to it as <SVC>_WORKER_PORT.
WORKER_PORT_OFFSET = 1000
# The gateway's internal listener for /readyz and /metrics.
GATEWAY_OPS_PORT = 9000


@dataclass(frozen=True)
class Sidecar:
    """A development stand-in that runs beside a service (a FastAPI app factory)."""

    name: str
    service: str
    app: str  # "module:factory"
    port: int
    env: Mapping[str, str] = field(default_factory=dict)

    def exists(self) -> bool:
        module = self.app.split(":", 1)[0].split(".")
        base = ROOT / "services" / self.service / "src" / Path(*module)
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


# The Paystack sandbox (a local emulation of api.paystack.co, see ARCHITECTURE.md §6) will live
# in services/payments. It joins `make up` by itself once `payments/sandbox.py` (or package)
# exists, and payments is pointed at it. Adjust the app path or variable names here when
# payments lands; its shared secret key goes into DEV_SECRETS below.
SIDECARS: tuple[Sidecar, ...] = (
    Sidecar(
        name="paystack-sandbox",
        service="payments",
        app="payments.sandbox:create_app",
        port=8010,
        env={"PAYMENTS_PAYSTACK_BASE_URL": "http://127.0.0.1:8010"},
    ),
)

# Development secrets, generated once into .local/secrets.env and reused (never printed).
# A name added here is appended to an existing file on the next run.
DEV_SECRETS: dict[str, Callable[[], str]] = {
    "IDENTITY_TOKEN_PEPPER": lambda: secrets.token_urlsafe(32),
    # Shared by the gateway and every service as <SVC>_EDGE_SECRET (krika_common.edge).
    "KRIKA_EDGE_SECRET": lambda: secrets.token_urlsafe(32),
    # "PAYMENTS_PAYSTACK_SECRET_KEY": lambda: "sk_test_" + secrets.token_hex(20),
}

# Launcher-level defaults for the backing servers; each service's own <SVC>_* variable wins.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"

HEALTH_TIMEOUT = float(os.environ.get("KRIKA_UP_TIMEOUT", "120"))
STOP_TIMEOUT = 10.0
EXIT_STOPPED, EXIT_DIED, EXIT_SETUP = 0, 1, 2

T = TypeVar("T")


class SetupError(Exception):
    """Something the developer has to fix before `make up` can work; the message says what."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


class ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


# --------------------------------------------------------------------------- output


class Console:
    """Prefixes every line with a coloured, fixed-width process name."""

    PALETTE = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")

    def __init__(self) -> None:
        self.width = 5
        self.colours: dict[str, str] = {}
        force = os.environ.get("FORCE_COLOR")
        self.colour = bool(force) or (sys.stdout.isatty() and "NO_COLOR" not in os.environ)

    def fit(self, names: Iterable[str]) -> None:
        self.width = max(self.width, *(len(n) for n in names))

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def line(self, name: str, text: str) -> None:
        if name not in self.colours:
            self.colours[name] = self.PALETTE[len(self.colours) % len(self.PALETTE)]
        prefix = self._paint(self.colours[name], f"{name:<{self.width}} |")
        sys.stdout.write("".join(f"{prefix} {part}\n" for part in text.split("\n")))
        sys.stdout.flush()

    def say(self, text: str) -> None:
        """A line from the launcher itself."""
        prefix = self._paint("1", "dev".ljust(self.width) + " |")
        sys.stdout.write(f"{prefix} {text}\n")
        sys.stdout.flush()


console = Console()


# Keys of the services' JSON log lines that `readable` folds into its fixed layout.
_LOG_LAYOUT = {"time", "level", "logger", "message", "service", "taskName", "color_message"}


def readable(line: str) -> str:
    """A JSON log line as `12:00:01 INFO  logger: message key=value`; other lines unchanged.

    A traceback in the record follows on its own lines. KRIKA_RAW_LOGS=1 keeps the JSON."""
    if not line.startswith("{") or os.environ.get("KRIKA_RAW_LOGS"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    clock = str(record.get("time", ""))[11:19]
    fields = {k: v for k, v in record.items() if k not in _LOG_LAYOUT and v not in (None, "")}
    blocks = [str(fields.pop(k)) for k in ("exc_info", "stack_info") if k in fields]
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    text = f"{clock} {record.get('level', '')!s:<5} {record.get('logger', '')}: "
    return "\n".join([f"{text}{record['message']} {extra}".rstrip(), *blocks])


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class App:
    """A process family: a service (with optional migrations and worker) or the gateway."""

    name: str
    port: int
    migrations: bool = False
    worker: bool = False

    @property
    def prefix(self) -> str:
        return self.name.upper().replace("-", "_") + "_"

    @property
    def worker_port(self) -> int:
        return self.port + WORKER_PORT_OFFSET


def discover() -> list[App]:
    """Every service under services/ plus the gateway (last: it fronts the others)."""
    apps: list[App] = []
    services = ROOT / "services"
    for folder in sorted(services.iterdir()) if services.is_dir() else []:
        if not (folder / "pyproject.toml").is_file():
            continue
        name = folder.name
        if name not in PORTS:
            raise SetupError(f"services/{name} has no port: add it to PORTS in scripts/dev.py")
        apps.append(
            App(
                name=name,
                port=PORTS[name],
                migrations=(folder / "alembic.ini").is_file(),
                worker=(folder / "src" / name / "worker.py").is_file(),
            )
        )
    apps.append(App(name="gateway", port=PORTS["gateway"]))
    return apps


def sidecars(apps: list[App]) -> list[Sidecar]:
    names = {a.name for a in apps}
    return [s for s in SIDECARS if s.service in names and s.exists()]


def asyncpg_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", url)


def environment(
    apps: list[App], extra: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Defaults for every process, overridden by whatever `base` (the environment) already sets."""
    base = os.environ if base is None else base
    postgres = asyncpg_url(base.get("POSTGRES_URL", DEFAULT_POSTGRES)).rstrip("/")
    identity = f"http://127.0.0.1:{PORTS['identity']}"
    defaults: dict[str, str] = {"PYTHONUNBUFFERED": "1", **extra}
    for app in apps:
        p = app.prefix
        defaults[f"{p}ENVIRONMENT"] = "development"
        defaults[f"{p}PORT"] = str(app.port)
        if "KRIKA_EDGE_SECRET" in extra:
            defaults[f"{p}EDGE_SECRET"] = extra["KRIKA_EDGE_SECRET"]
        if app.name in ("identity", "notify") and "KRIKA_LINK_KEY_FILE" in extra:
            defaults[f"{p}LINK_KEY_FILE"] = extra["KRIKA_LINK_KEY_FILE"]
        defaults[f"{p}REDIS_URL"] = base.get("REDIS_URL", DEFAULT_REDIS)
        defaults[f"{p}AMQP_URL"] = base.get("AMQP_URL", DEFAULT_AMQP)
        defaults[f"{p}JWKS_URL"] = f"{identity}/.well-known/jwks.json"
        if app.migrations:
            defaults[f"{p}DATABASE_URL"] = f"{postgres}/krika_{app.name}"
        if app.worker:
            defaults[f"{p}WORKER_PORT"] = str(app.worker_port)
        if "MONGODB_URL" in extra:
            defaults[f"{p}MONGODB_URL"] = extra["MONGODB_URL"]
        if app.name != "gateway":
            defaults[f"GATEWAY_{p}URL"] = f"http://127.0.0.1:{app.port}"
    defaults["GATEWAY_IDENTITY_URL"] = identity
    defaults["GATEWAY_OPS_PORT"] = str(GATEWAY_OPS_PORT)
    for sidecar in sidecars(apps):
        defaults.update(sidecar.env)
    return {**defaults, **base}


# --------------------------------------------------------------------------- backing servers


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _check_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_libpq_url(url, "postgres"), timeout=5)
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


# --------------------------------------------------------------------------- secrets, databases


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return values


def ensure_dev_secrets() -> dict[str, str]:
    """The signing key and secrets in .local/ (created once, then reused), as variables."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    LOCAL.mkdir(exist_ok=True)
    # The folder is in the root .gitignore too; this keeps it ignored even if that changes.
    (LOCAL / ".gitignore").write_text("*\n")
    if SIGNING_KEY.is_file():
        try:
            serialization.load_pem_private_key(SIGNING_KEY.read_bytes(), password=None)
        except ValueError as exc:
            raise SetupError(
                f"{SIGNING_KEY.relative_to(ROOT)} is not a readable PEM private key ({exc}); "
                "delete it to have a new one generated"
            ) from exc
        console.say(f"signing key {SIGNING_KEY.relative_to(ROOT)} (reused)")
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(SIGNING_KEY, pem)
        console.say(f"signing key {SIGNING_KEY.relative_to(ROOT)} (generated)")
    if not LINK_KEY.is_file():
        from cryptography.hazmat.primitives.asymmetric import ec

        link = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(LINK_KEY, link)
        console.say(f"link key    {LINK_KEY.relative_to(ROOT)} (generated)")

    values = _read_env_file(SECRETS_ENV)
    missing = [name for name in DEV_SECRETS if not values.get(name)]
    for name in missing:
        values[name] = DEV_SECRETS[name]()
    if missing or not SECRETS_ENV.is_file():
        body = "# Development secrets generated by scripts/dev.py. Never used outside dev.\n"
        body += "".join(f"{k}={v}\n" for k, v in values.items())
        _write_private(SECRETS_ENV, body.encode())
    state = f"generated {', '.join(missing)}" if missing else "reused"
    console.say(f"secrets     {SECRETS_ENV.relative_to(ROOT)} ({state})")
    return {
        "IDENTITY_SIGNING_KEY_FILE": str(SIGNING_KEY),
        "KRIKA_LINK_KEY_FILE": str(LINK_KEY),
        **values,
    }


def _libpq_url(url: str, database: str) -> str:
    parts = urlsplit(re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url))
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


async def ensure_database(url: str) -> None:
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SetupError(f"unexpected database name {name!r} in {redact_url(url)}")
    conn = await asyncpg.connect(_libpq_url(url, "postgres"), timeout=5)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            console.say(f"database    {name} exists")
            return
        await conn.execute(f'CREATE DATABASE "{name}"')
        console.say(f"database    {name} created")
    finally:
        await conn.close()


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> Callable[[], None] | None:
    """Children get SIGTERM if the launcher is killed outright (Linux), so no port stays taken."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    tier: int
    one_shot: bool
    done: asyncio.Task[int] | None = None

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        # Each child leads its own process group: signal anything it started too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class Supervisor:
    """Runs children with prefixed output; notices one dying; stops them all."""

    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt
        self.children: list[Child] = []
        self.stopping = False
        self.died: asyncio.Future[Child] = asyncio.get_running_loop().create_future()
        self._preexec = _die_with_parent()

    async def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, tier: int = 1
    ) -> Child:
        return await self._spawn(name, argv, env, tier=tier, one_shot=False)

    async def run(self, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        """Run a process to completion (a migration), still stoppable by Ctrl-C."""
        child = await self._spawn(name, argv, env, tier=1, one_shot=True)
        assert child.done is not None
        # Shielded: an interrupted race must not cancel the watcher stop_all() waits on.
        return await self.interrupt.race(asyncio.shield(child.done), self)

    async def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, tier: int, one_shot: bool
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,
            limit=1 << 20,
        )
        child = Child(name, proc, tier, one_shot)
        child.done = asyncio.create_task(self._watch(child))
        self.children.append(child)
        return child

    async def _pump(self, child: Child) -> None:
        stream = child.proc.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: print what there is
                raw = await stream.read(1 << 16)
            if not raw:
                return
            console.line(child.name, readable(raw.decode("utf-8", "replace").rstrip("\r\n")))

    async def _watch(self, child: Child) -> int:
        pump = asyncio.create_task(self._pump(child))
        code = await child.proc.wait()
        # Something the child started may still hold the pipe; do not wait for it forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump, timeout=2)
        if not child.one_shot and not self.stopping and not self.died.done():
            self.died.set_result(child)
        return code

    async def stop_all(self) -> None:
        """SIGTERM (apps before the infrastructure they use), wait, then SIGKILL stragglers."""
        self.stopping = True
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            group = [c for c in self.children if c.tier == tier and c.running]
            if not group:
                continue
            for child in group:
                child.signal(signal.SIGTERM)
            waits = {c.done for c in group if c.done is not None}
            all_done = asyncio.ensure_future(asyncio.wait(waits))
            force = asyncio.create_task(self.interrupt.force.wait())
            await asyncio.wait(
                {all_done, force}, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            force.cancel()
            all_done.cancel()
            for child in group:
                if child.running:
                    console.say(f"{child.name} did not stop in time: SIGKILL")
                    child.signal(signal.SIGKILL)
            await asyncio.wait(waits, timeout=5)


class Interrupt:
    """Ctrl-C / SIGTERM: the first one stops gracefully, another (a second later) forces."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self._first: float | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
            self.stop.set()
            console.say(f"{sig.name}: stopping everything (again to force)")
        # The same Ctrl-C can arrive twice (terminal and `uv run`); only a later one forces.
        elif now - self._first > 1.0 and not self.force.is_set():
            self.force.set()
            console.say("forcing: SIGKILL")

    async def race(self, work: Awaitable[T], supervisor: Supervisor | None = None) -> T:
        """`work`'s result, unless a signal arrives (Stopped) or a child dies (ChildDied)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self.stop.wait())
        watch: set[asyncio.Future[Any]] = {task, stop}
        if supervisor is not None:
            watch.add(supervisor.died)
        try:
            await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.stop.is_set():
            raise Stopped
        assert supervisor is not None
        raise ChildDied(supervisor.died.result())


# --------------------------------------------------------------------------- up


def _port_in_use(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.3)


def _uvicorn(app: str, port: int) -> list[str]:
    # The venv's interpreter directly: what `uv run --no-sync uvicorn ...` runs, one process less.
    return [
        sys.executable, "-m", "uvicorn", app,
        "--factory", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


async def start_mongo(supervisor: Supervisor) -> dict[str, str]:
    """MONGODB_URL when given; else an nx-27017 child on 27017 (or a free port)."""
    if url := os.environ.get("MONGODB_URL"):
        console.say(f"MongoDB    {redact_url(url)} (MONGODB_URL)")
        return {}
    exe = Path(sys.executable).with_name("nx-27017")
    if not exe.is_file():
        raise SetupError(f"{exe} is missing: run `make sync` (nx-27017 is a dev dependency)")
    port = 27017 if not _port_in_use(27017) else free_port()
    data = LOCAL / "mongo"
    (LOCAL / "run").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(exe), "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
        "--pid-file", str(LOCAL / "run" / "nx-27017.pid"),
        "--log-file", str(LOCAL / "run" / "nx-27017.log"),
    ]  # fmt: skip
    await supervisor.spawn("mongo", argv, os.environ, tier=0)
    deadline = time.monotonic() + 20
    while not _port_in_use(port):
        if time.monotonic() > deadline:
            raise SetupError(f"nx-27017 did not listen on 127.0.0.1:{port} within 20s")
        await asyncio.sleep(0.2)
    url = f"mongodb://127.0.0.1:{port}"
    console.say(f"MongoDB    {url} (nx-27017, data in .local/mongo)")
    return {"MONGODB_URL": url}


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    required: bool


async def wait_healthy(endpoints: list[Endpoint]) -> list[Endpoint]:
    """Poll /healthz until every required endpoint answers 200; optional ones get a grace."""
    import httpx

    pending = list(endpoints)
    up: list[Endpoint] = []
    deadline = time.monotonic() + HEALTH_TIMEOUT
    grace: float | None = None
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while pending:
            for endpoint in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(endpoint.url)).status_code == 200:
                        pending.remove(endpoint)
                        up.append(endpoint)
                        console.say(f"{endpoint.name} is up")
            now = time.monotonic()
            if not any(e.required for e in pending):
                grace = grace or now + 5
                if now > grace:
                    for endpoint in pending:
                        console.say(f"{endpoint.name}: no answer from {endpoint.url} (ignored)")
                    break
            if now > deadline:
                late = ", ".join(e.name for e in pending if e.required)
                raise SetupError(f"no /healthz answer within {HEALTH_TIMEOUT:.0f}s from: {late}")
            await asyncio.sleep(0.25)
    return up


async def prepare(
    supervisor: Supervisor | None, apps: list[App], interrupt: Interrupt
) -> dict[str, str]:
    """Infra, Mongo, secrets, databases and migrations; the environment for the processes."""
    env = environment(apps, {})
    await interrupt.race(ensure_infra(env, apps))
    extra = ensure_dev_secrets()
    if supervisor is not None:
        extra.update(await interrupt.race(start_mongo(supervisor), supervisor))
    env = environment(apps, extra)
    for app in apps:
        if app.migrations:
            await interrupt.race(ensure_database(env[f"{app.prefix}DATABASE_URL"]))
    if supervisor is None:
        migrate_only = Supervisor(interrupt)
        try:
            await migrate(migrate_only, apps, env)
        finally:
            await migrate_only.stop_all()
    else:
        await migrate(supervisor, apps, env)
    return env


async def migrate(supervisor: Supervisor, apps: list[App], env: Mapping[str, str]) -> None:
    async def one(app: App) -> None:
        ini = f"services/{app.name}/alembic.ini"
        argv = [sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"]
        code = await supervisor.run(f"{app.name}-migrate", argv, env)
        if code != 0:
            raise SetupError(f"{app.name}: `alembic -c {ini} upgrade head` failed (exit {code})")
        console.say(f"migrations  {app.name} at head")

    # Independent databases: migrate them side by side, then report every failure at once.
    results = await asyncio.gather(*(one(a) for a in apps if a.migrations), return_exceptions=True)
    for result in results:
        if isinstance(result, Stopped | ChildDied):
            raise result
    problems = [str(r) for r in results if isinstance(r, BaseException)]
    if problems:
        raise SetupError("; ".join(problems))


@dataclass(frozen=True)
class Proc:
    """A long-running process; each wave starts once the previous one answers /healthz."""

    name: str
    argv: list[str]
    health: Endpoint
    wave: int


def plan_processes(apps: list[App]) -> list[Proc]:
    """Sidecars, services and workers first; the gateway once they answer, so that a gateway
    answering /healthz means the whole system is there."""
    plan: list[Proc] = []
    for sidecar in sidecars(apps):
        url = f"http://127.0.0.1:{sidecar.port}/healthz"
        argv = _uvicorn(sidecar.app, sidecar.port)
        plan.append(Proc(sidecar.name, argv, Endpoint(sidecar.name, url, True), wave=0))
    for app in apps:
        url = f"http://127.0.0.1:{app.port}/healthz"
        # `python -m <service>`: uvicorn with Krika's HTTP limits (krika_common.server), on
        # <SVC>_PORT; the gateway also listens on its operations port.
        argv = [sys.executable, "-m", app.name]
        wave = 1 if app.name == "gateway" else 0
        plan.append(Proc(app.name, argv, Endpoint(app.name, url, True), wave))
        if app.worker:
            name = f"{app.name}-worker"
            url = f"http://127.0.0.1:{app.worker_port}/healthz"
            argv = [sys.executable, "-m", f"{app.name}.worker"]
            plan.append(Proc(name, argv, Endpoint(name, url, False), wave))
    return plan


def _ports_of(apps: list[App]) -> dict[int, str]:
    ports = {app.port: app.name for app in apps}
    ports.update({a.worker_port: f"{a.name}-worker" for a in apps if a.worker})
    ports.update({s.port: s.name for s in sidecars(apps)})
    ports[GATEWAY_OPS_PORT] = "gateway (operations)"
    return ports


def print_urls(up: list[Endpoint], env: Mapping[str, str]) -> None:
    gateway = PORTS["gateway"]
    console.say("Krika is up:")
    console.say(f"  gateway          http://localhost:{gateway}")
    console.say(f"  API docs         http://localhost:{gateway}/api/docs")
    console.say(f"  gateway metrics  http://localhost:{GATEWAY_OPS_PORT}/metrics (and /readyz)")
    for endpoint in up:
        if endpoint.name != "gateway":
            local = endpoint.url.replace("127.0.0.1", "localhost")
            console.say(f"  {endpoint.name:<16} {local}")
    if "MONGODB_URL" in env:
        console.say(f"  {'MongoDB':<16} {redact_url(env['MONGODB_URL'])}")
    console.say("Ctrl-C stops everything.")


async def up() -> int:
    interrupt = Interrupt()
    interrupt.install()
    apps = discover()
    plan = plan_processes(apps)
    console.fit(
        [proc.name for proc in plan]
        + [f"{a.name}-migrate" for a in apps if a.migrations]
        + ["mongo"]
    )
    busy = {p: n for p, n in _ports_of(apps).items() if _port_in_use(p)}
    if busy:
        taken = ", ".join(f"{p} ({n})" for p, n in sorted(busy.items()))
        raise SetupError(
            f"port(s) already in use: {taken}. Is another `make up` running? Stop it first."
        )
    supervisor = Supervisor(interrupt)
    try:
        env = await prepare(supervisor, apps, interrupt)
        up_endpoints: list[Endpoint] = []
        for wave in sorted({proc.wave for proc in plan}):
            procs = [proc for proc in plan if proc.wave == wave]
            for proc in procs:  # later waves are stopped first: the gateway before services
                await supervisor.spawn(proc.name, proc.argv, env, tier=1 + wave)
            healthy = wait_healthy([proc.health for proc in procs])
            up_endpoints += await interrupt.race(healthy, supervisor)
        print_urls(up_endpoints, env)
        forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await interrupt.race(forever, supervisor)  # returns only by Stopped or ChildDied
    except Stopped:
        await supervisor.stop_all()
        console.say("stopped")
        return EXIT_STOPPED
    except ChildDied as died:
        child = died.child
        console.say(
            f"{child.name} exited unexpectedly (exit {child.proc.returncode}): stopping everything"
        )
        await supervisor.stop_all()
        return EXIT_DIED
    finally:
        await supervisor.stop_all()  # SetupError or a bug: leave nothing running
    return EXIT_DIED


async def run_ensure_infra() -> int:
    apps = discover()
    await ensure_infra(environment(apps, {}), apps)
    return 0


async def run_migrate() -> int:
    interrupt = Interrupt()
    interrupt.install()
    apps = discover()
    console.fit([f"{a.name}-migrate" for a in apps if a.migrations])
    try:
        await prepare(None, apps, interrupt)
    except Stopped:
        return EXIT_STOPPED
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command", nargs="?", default="up", choices=["up", "ensure-infra", "migrate"]
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    runner = {"up": up, "ensure-infra": run_ensure_infra, "migrate": run_migrate}[args.command]
    try:
        return asyncio.run(runner())
    except SetupError as exc:
        console.say(f"cannot continue: {exc}")
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
