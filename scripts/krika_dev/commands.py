"""`up`, `migrate` and `ensure-infra`, and the command line scripts/dev.py runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from krika_common.config import redact_url
from krika_common.server import free_port, port_open
from krika_dev.backing import ensure_infra
from krika_dev.console import console
from krika_dev.plan import (
    GATEWAY_OPS_PORT,
    LOCAL,
    MAILCATCHER_HTTP_PORT,
    MAILCATCHER_SMTP_PORT,
    PORTS,
    ROOT,
    App,
    SetupError,
    discover,
    environment,
    sidecars,
)
from krika_dev.processes import ChildDied, Interrupt, Stopped, Supervisor
from krika_dev.provision import ensure_database, ensure_dev_secrets

HEALTH_TIMEOUT = float(os.environ.get("KRIKA_UP_TIMEOUT", "120"))
EXIT_STOPPED, EXIT_DIED, EXIT_SETUP = 0, 1, 2


def _port_in_use(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.3)


def _uvicorn(app: str, port: int) -> list[str]:
    # The venv's interpreter directly: what `uv run --no-sync uvicorn ...` runs, one process less.
    return [
        sys.executable, "-m", "uvicorn", app,
        "--factory", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


async def start_mongo(supervisor: Supervisor) -> dict[str, str]:
    """MONGODB_URL when given (environment() hands it on); else an nx-27017 child on 27017 (or
    a free port), whose URL is returned as MONGODB_URL."""
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


async def start_mailcatcher(supervisor: Supervisor, apps: list[App]) -> dict[str, str]:
    """SMTP_URL when given (environment() hands it on), or nothing when every service that
    sends mail has its own <SVC>_SMTP_HOST; else the mail catcher as a child (SMTP on 1025, its
    web UI on 1080, or free ports), whose URLs are returned as SMTP_URL and MAILCATCHER_URL."""
    if url := os.environ.get("SMTP_URL"):
        console.say(f"Mail       {redact_url(url)} (SMTP_URL)")
        return {}
    if all(f"{app.prefix}SMTP_HOST" in os.environ for app in apps if app.mail):
        console.say("Mail       <SVC>_SMTP_HOST is set: no mail catcher")
        return {}
    smtp_port, http_port = MAILCATCHER_SMTP_PORT, MAILCATCHER_HTTP_PORT
    smtp_port = smtp_port if not _port_in_use(smtp_port) else free_port()
    http_port = http_port if not _port_in_use(http_port) else free_port()
    argv = [
        sys.executable, "-m", "krika_dev.mailcatcher",
        "--smtp-port", str(smtp_port), "--http-port", str(http_port),
    ]  # fmt: skip
    # The launcher's own package, from scripts/ (it is not installed in the venv).
    scripts = str(ROOT / "scripts")
    path = os.pathsep.join(p for p in (scripts, os.environ.get("PYTHONPATH")) if p)
    await supervisor.spawn("mail", argv, {**os.environ, "PYTHONPATH": path}, tier=0)
    deadline = time.monotonic() + 20
    while not (_port_in_use(smtp_port) and _port_in_use(http_port)):
        if time.monotonic() > deadline:
            raise SetupError(
                f"the mail catcher did not listen on 127.0.0.1:{smtp_port} (SMTP) and"
                f" 127.0.0.1:{http_port} (web) within 20s"
            )
        await asyncio.sleep(0.2)
    web = f"http://127.0.0.1:{http_port}"
    console.say(f"Mail       {web} (mail catcher, SMTP on 127.0.0.1:{smtp_port})")
    return {"SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "MAILCATCHER_URL": web}


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
    if supervisor is not None and any(app.mongodb for app in apps):
        extra.update(await interrupt.race(start_mongo(supervisor), supervisor))
    if supervisor is not None and any(app.mail for app in apps):
        extra.update(await interrupt.race(start_mailcatcher(supervisor, apps), supervisor))
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
    if any(endpoint.name == "chat" for endpoint in up):
        # chat's Socket.IO hub, through the gateway like any frontend: WebSocket transport only,
        # the access token in `access_token` (browsers) or the Authorization header.
        console.say(
            f"  {'realtime':<16} ws://localhost:{gateway}/socket.io/"
            "?EIO=4&transport=websocket&access_token=<token> (Socket.IO)"
        )
    for endpoint in up:
        if endpoint.name != "gateway":
            local = endpoint.url.replace("127.0.0.1", "localhost")
            console.say(f"  {endpoint.name:<16} {local}")
    if "MONGODB_URL" in env:
        console.say(f"  {'MongoDB':<16} {redact_url(env['MONGODB_URL'])}")
    if "MAILCATCHER_URL" in env:
        console.say(f"  {'Mail':<16} {env['MAILCATCHER_URL']} (every e-mail sent in development)")
    console.say("Ctrl-C stops everything.")


async def up() -> int:
    interrupt = Interrupt()
    interrupt.install()
    apps = discover()
    plan = plan_processes(apps)
    console.fit(
        [proc.name for proc in plan]
        + [f"{a.name}-migrate" for a in apps if a.migrations]
        + ["mongo", "mail"]
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


def main(argv: list[str] | None = None, *, description: str | None = None) -> int:
    """The command line of scripts/dev.py; `description` is the first line of its docstring."""
    parser = argparse.ArgumentParser(prog="scripts/dev.py", description=description)
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
