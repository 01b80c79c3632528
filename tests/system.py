"""The whole Krika system as real, separate processes: what `make up` runs, for system tests
(tests/test_marketplace_journey.py) and benchmarks (bench/journey.py).

The launcher's own plan decides what runs and with which environment (scripts/krika_dev:
`discover()`, `environment()`, `plan_processes()`, `DEV_SECRETS`, `migrate()`); this module only
changes where the state goes and starts the processes itself, so that a test can SIGKILL one of
them and start it again:

- databases of its own (`krika_sys_<run>_<service>`, through each `<SVC>_DATABASE_URL`),
  created and migrated by the services' own Alembic revisions, dropped at the end;
- an events exchange of its own (`<SVC>_EVENTS_EXCHANGE`, deleted at the end). The queues keep
  their names (`<service>.events`): they are bound to this exchange only while it exists;
- a Redis database index of its own, flushed before and after;
- for a service on MongoDB (chat), an `nx-27017` Mongo-wire server of its own (a free port, data
  in the folder), or the server `mongodb_url` names, with a database `krika_sys_<run>_<service>`;
- fresh secrets (the launcher's `DEV_SECRETS` generators, new keys), files, the sandbox's
  SQLite database and every process's log in a folder of its own;
- any other variable in `settings` (short timings...).

The ports are the fixed ones of `make up` (8000-8010, 9000-9005): start() refuses to run when one
is taken, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from krika_dev.commands import Proc, migrate, plan_processes  # noqa: E402
from krika_dev.plan import (  # noqa: E402
    DEV_SECRETS,
    GATEWAY_OPS_PORT,
    PORTS,
    App,
    discover,
    environment,
    sidecars,
)
from krika_dev.processes import Interrupt, Supervisor, _die_with_parent  # noqa: E402

from krika_common.server import port_open  # noqa: E402
from krika_common.testing.databases import create_database, drop_database  # noqa: E402
from payments.sandbox.testing import Sandbox  # noqa: E402

GATEWAY = f"http://127.0.0.1:{PORTS['gateway']}"
API = f"{GATEWAY}/api/v1"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class PortsBusy(RuntimeError):
    """A port the system needs is already taken (a running `make up`?)."""


@dataclass
class Running:
    """One process of the plan, as we started it."""

    proc: Proc
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


def _signing_keys(folder: Path) -> dict[str, str]:
    """A new identity signing key and notify link key, as the launcher makes them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pem = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8)
    signing, link = folder / "identity-signing.pem", folder / "notify-links.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing.write_bytes(rsa_key.private_bytes(*pem, serialization.NoEncryption()))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    link.write_bytes(ec_key.private_bytes(*pem, serialization.NoEncryption()))
    for path in (signing, link):
        path.chmod(0o600)
    return {"IDENTITY_SIGNING_KEY_FILE": str(signing), "KRIKA_LINK_KEY_FILE": str(link)}


class System:
    """Every service, worker, sidecar and the gateway of the launcher's plan, each a process."""

    def __init__(
        self,
        *,
        run_id: str,
        folder: Path,
        postgres_url: str,
        amqp_url: str,
        redis_url: str,
        settings: Mapping[str, str] | None = None,
        mongodb_url: str | None = None,
    ) -> None:
        self.mongodb_url = mongodb_url
        self._mongo: subprocess.Popen[bytes] | None = None
        self.run_id = re.sub(r"[^a-z0-9_]", "_", run_id.lower())
        self.folder = folder
        self.postgres_url = postgres_url.rstrip("/")
        self.amqp_url = amqp_url
        self.redis_url = redis_url
        self.exchange = f"krika.events.system.{self.run_id}"
        self.apps: list[App] = discover()
        self.plan: dict[str, Proc] = {p.name: p for p in plan_processes(self.apps)}
        self.settings = dict(settings or {})
        self.env: dict[str, str] = {}
        self.running: dict[str, Running] = {}
        self._databases: list[str] = []

    # ------------------------------------------------------------------ what it is

    def ports(self) -> dict[int, str]:
        """Every port the system listens on, and who listens there."""
        ports = {app.port: app.name for app in self.apps}
        ports.update({a.worker_port: f"{a.name}-worker" for a in self.apps if a.worker})
        ports.update({s.port: s.name for s in sidecars(self.apps)})
        ports[GATEWAY_OPS_PORT] = "gateway (operations)"
        return ports

    def ready_url(self, name: str) -> str:
        """/readyz (a worker's: connected and consuming; the gateway's on its operations
        port); a sidecar's /healthz."""
        proc = self.plan[name]
        if name == "gateway":
            return f"http://127.0.0.1:{GATEWAY_OPS_PORT}/readyz"
        if name in {s.name for s in sidecars(self.apps)}:
            return proc.health.url
        return proc.health.url.replace("/healthz", "/readyz")

    def metrics_url(self, name: str) -> str:
        return self.plan[name].health.url.replace("/healthz", "/metrics")

    @property
    def sandbox_url(self) -> str:
        (sandbox,) = sidecars(self.apps)
        return f"http://127.0.0.1:{sandbox.port}"

    @property
    def sandbox_secret_key(self) -> str:
        return self.env["PAYSTACK_SANDBOX_SECRET_KEY"]

    def sandbox(self) -> Sandbox:
        """The sandbox's test controls and its checkout page's form (`pay`), on the process
        this system runs."""
        (sidecar,) = sidecars(self.apps)
        log = self.folder / "logs" / f"{sidecar.name}.log"
        return Sandbox(
            sidecar.port,
            self.env["PAYSTACK_SANDBOX_DATABASE_URL"],
            {"PAYSTACK_SANDBOX_SECRET_KEY": self.sandbox_secret_key},
            log,
        )

    def database_url(self, app: str) -> str:
        return self.env[f"{app.upper()}_DATABASE_URL"]

    def pid(self, name: str) -> int:
        return self.running[name].popen.pid

    # ------------------------------------------------------------------ lifecycle

    def _overrides(self, extra: Mapping[str, str]) -> dict[str, str]:
        files = self.folder / "files"
        values: dict[str, str] = {}
        for app in self.apps:
            p = app.prefix
            values[f"{p}EVENTS_EXCHANGE"] = self.exchange
            values[f"{p}AMQP_URL"] = self.amqp_url
            values[f"{p}REDIS_URL"] = self.redis_url
            if app.migrations:
                name = f"krika_sys_{self.run_id}_{app.name}"
                values[f"{p}DATABASE_URL"] = f"{self.postgres_url}/{name}"
            if app.name != "gateway":
                values[f"{p}STORAGE_URL"] = (files / app.name).as_uri()
            if app.mongodb and self.mongodb_url:
                values[f"{p}MONGODB_URL"] = self.mongodb_url
                values[f"{p}MONGODB_DATABASE"] = f"krika_sys_{self.run_id}_{app.name}"
        values["PAYSTACK_SANDBOX_DATABASE_URL"] = (
            f"sqlite+aiosqlite:///{self.folder / 'paystack-sandbox.db'}"
        )
        values["NO_COLOR"] = "1"
        return values | dict(extra)

    async def start(self) -> None:
        busy = [f"{port} ({name})" for port, name in sorted(self.ports().items()) if _taken(port)]
        if busy:
            raise PortsBusy(
                f"port(s) {', '.join(busy)} already in use: stop the running `make up` (or "
                "whatever holds them) first"
            )
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        if self.mongodb_url is None and any(app.mongodb for app in self.apps):
            self.mongodb_url = await self._start_mongo()
        keys = self.folder / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        extra = {name: make() for name, make in DEV_SECRETS.items()} | _signing_keys(keys)
        base = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
        base |= self._overrides(self.settings)
        self.env = environment(self.apps, extra, base)
        await self._flush_redis()
        for app in self.apps:
            if app.migrations:
                url = self.env[f"{app.prefix}DATABASE_URL"]
                server, _, name = url.rpartition("/")
                await create_database(server, name)
                self._databases.append(name)
        supervisor = Supervisor(Interrupt())
        try:
            await migrate(supervisor, self.apps, self.env)
        finally:
            await supervisor.stop_all()
        for wave in sorted({p.wave for p in self.plan.values()}):
            names = [p.name for p in self.plan.values() if p.wave == wave]
            for name in names:
                self.spawn(name)
            await asyncio.gather(*(self.wait_ready(name) for name in names))

    async def _start_mongo(self) -> str:
        """An nx-27017 server of this system's own (stopped by stop())."""
        port = self._spawn_mongo()
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port, 0.2):
            if self._mongo is None or self._mongo.poll() is not None:
                raise RuntimeError(f"nx-27017 exited:\n{self.log('mongo')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nx-27017 did not listen on 127.0.0.1:{port}")
            await asyncio.sleep(0.1)
        return f"mongodb://127.0.0.1:{port}"

    def _spawn_mongo(self) -> int:
        from krika_common.server import free_port

        port = free_port()
        data = self.folder / "mongo"
        data.mkdir(exist_ok=True)
        log = (self.folder / "logs" / "mongo.log").open("ab")
        self._mongo = subprocess.Popen(  # noqa: S603 - our own venv's console script
            [
                str(Path(sys.executable).with_name("nx-27017")),
                *("--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)),
                *("--pid-file", str(data / "nx.pid"), "--log-file", str(data / "nx.log")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        log.close()
        return port

    def spawn(self, name: str) -> Running:
        proc = self.plan[name]
        log = (self.folder / "logs" / f"{name}.log").open("ab")
        popen = subprocess.Popen(  # noqa: S603 - the launcher's own argv
            proc.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        self.running[name] = Running(proc, popen, log)
        return self.running[name]

    async def wait_ready(self, name: str, within: float = START_TIMEOUT) -> None:
        url = self.ready_url(name)
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while True:
                running = self.running[name]
                if not running.alive:
                    raise RuntimeError(
                        f"{name} exited ({running.popen.returncode}) before it was ready:\n"
                        f"{self.log(name)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: {url} not ready within {within:.0f}s")
                await asyncio.sleep(0.1)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send `sig` to the process (its group), wait for it to end; its exit code."""
        running = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.popen.pid, sig)
        code = running.popen.wait(STOP_TIMEOUT)
        running.log.close()
        return code

    async def restart(self, name: str) -> None:
        """Start it again (after kill) and wait until it is ready."""
        if self.running[name].alive:
            raise RuntimeError(f"{name} is still running")
        self.spawn(name)
        await self.wait_ready(name)

    def dead(self) -> list[str]:
        """Processes that ended on their own."""
        return [n for n, r in self.running.items() if not r.alive and not r.log.closed]

    async def stop(self) -> None:
        """SIGTERM (the gateway first, then the rest), SIGKILL stragglers; then drop what was
        made: databases, the exchange, the Redis database."""
        for wave in sorted({p.wave for p in self.plan.values()}, reverse=True):
            group = [r for r in self.running.values() if r.proc.wave == wave and r.alive]
            for running in group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for running in group:
                try:
                    running.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(running.popen.pid, signal.SIGKILL)
                    running.popen.wait()
        for running in self.running.values():
            running.log.close()
        if self._mongo is not None:
            self._mongo.terminate()
            try:
                self._mongo.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._mongo.kill()
                self._mongo.wait()
            self._mongo = None
        for name in self._databases:
            with contextlib.suppress(Exception):
                await drop_database(self.postgres_url, name)
        self._databases.clear()
        await self._delete_exchange()
        await self._flush_redis()

    async def _flush_redis(self) -> None:
        client: Redis = Redis.from_url(self.redis_url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    async def _delete_exchange(self) -> None:
        import aio_pika

        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(self.amqp_url)
            async with connection:
                channel = await connection.channel()
                await channel.exchange_delete(self.exchange)

    # ------------------------------------------------------------------ operations

    async def grant_admin(self, email: str) -> None:
        """The documented command: `python -m identity.cli grant-admin EMAIL`."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity.cli",
            "grant-admin",
            email,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"grant-admin {email} failed: {output.decode(errors='replace')}")

    async def publish(self, body: bytes, *, routing_key: str, message_id: str) -> None:
        """Put a message on the system's exchange (as a relay that published twice would)."""
        import aio_pika

        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(self.exchange)
            message = aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=routing_key)

    async def counter(self, name: str, metric: str, **labels: str) -> float:
        """The sum of a Prometheus counter's samples (matching `labels`) on a process's
        /metrics; 0 when it has none yet."""
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            text = (await client.get(self.metrics_url(name))).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(metric + "{") and not line.startswith(metric + " "):
                continue
            sample, _, value = line.rpartition(" ")
            found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    def log(self, name: str, lines: int = 60) -> str:
        path = self.folder / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def problems(self) -> str:
        """ERROR lines and tracebacks in every process's log (for a failing test's report)."""
        found: list[str] = []
        for name in self.running:
            path = self.folder / "logs" / f"{name}.log"
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    if re.search(r'"level": ?"(ERROR|CRITICAL)"', line) or "Traceback" in line:
                        found.append(f"{name}: {line[:800]}")
        return "\n".join(found[-80:])


def _taken(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.3)


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]
