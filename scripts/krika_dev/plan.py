"""What `make up` runs, and with which environment: the tables to edit when a service is added.

PORTS (every service's port), SIDECARS (development stand-ins run beside a service), DEV_SECRETS
(generated once into .local/secrets.env) and GATEWAY_OPS_PORT are here; so are the apps
discovered under services/ and the environment every process gets.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent.parent
LOCAL = ROOT / ".local"

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


# The Paystack sandbox (payments.sandbox, a local emulation of api.paystack.co): payments is
# pointed at it, it sends its signed webhooks to payments through the gateway (the public route
# Paystack would call), and it keeps its state in .local/. Both share the secret key below.
SIDECARS: tuple[Sidecar, ...] = (
    Sidecar(
        name="paystack-sandbox",
        service="payments",
        app="payments.sandbox:create_app",
        port=8010,
        env={
            "PAYMENTS_PAYSTACK_BASE_URL": "http://127.0.0.1:8010",
            "PAYSTACK_SANDBOX_PUBLIC_URL": "http://127.0.0.1:8010",
            "PAYSTACK_SANDBOX_WEBHOOK_URL": (
                f"http://127.0.0.1:{PORTS['gateway']}/api/v1/payments/webhooks/paystack"
            ),
            "PAYSTACK_SANDBOX_DATABASE_URL": f"sqlite+aiosqlite:///{LOCAL / 'paystack-sandbox.db'}",
        },
    ),
)

# Development secrets, generated once into .local/secrets.env and reused (never printed).
# A name added here is appended to an existing file on the next run.
DEV_SECRETS: dict[str, Callable[[], str]] = {
    "IDENTITY_TOKEN_PEPPER": lambda: secrets.token_urlsafe(32),
    # Shared by the gateway and every service as <SVC>_EDGE_SECRET (krika_common.edge).
    "KRIKA_EDGE_SECRET": lambda: secrets.token_urlsafe(32),
    # Each service with files signs its download links with its own key (krika_common.storage).
    "IDENTITY_FILE_LINK_SECRET": lambda: secrets.token_urlsafe(32),
    "CATALOG_FILE_LINK_SECRET": lambda: secrets.token_urlsafe(32),
    "ORDERS_FILE_LINK_SECRET": lambda: secrets.token_urlsafe(32),
    "CHAT_FILE_LINK_SECRET": lambda: secrets.token_urlsafe(32),
    # notify signs its one-click unsubscribe links with it (HMAC-SHA256).
    "NOTIFY_UNSUBSCRIBE_SECRET": lambda: secrets.token_urlsafe(32),
    # payments' Paystack secret key; the sandbox gets it as PAYSTACK_SANDBOX_SECRET_KEY.
    "PAYMENTS_PAYSTACK_SECRET_KEY": lambda: "sk_test_" + secrets.token_hex(20),
}

# Launcher-level defaults for the backing servers; each service's own <SVC>_* variable wins.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"

# A service depending on one of these keeps its data in MongoDB (chat: Beanie on pymongo's async
# client): it gets <SVC>_MONGODB_URL, and `make up` starts nx-27017 for it unless MONGODB_URL
# names a server.
MONGODB_CLIENTS: tuple[str, ...] = ("beanie", "pymongo", "motor")

# A service depending on one of these sends e-mail (notify): it gets <SVC>_SMTP_HOST, _PORT and
# _SECURITY (and _USERNAME / _PASSWORD) from SMTP_URL when the developer gives one; else `make up`
# starts the development mail catcher (scripts/krika_dev/mailcatcher.py) and points it there.
SMTP_CLIENTS: tuple[str, ...] = ("aiosmtplib",)
# The mail catcher's SMTP and web UI ports (free ones when these are taken).
MAILCATCHER_SMTP_PORT = 1025
MAILCATCHER_HTTP_PORT = 1080
# SMTP_URL's schemes: the connection's security and its usual port.
SMTP_SCHEMES: dict[str, tuple[str, int]] = {
    "smtp": ("none", 25),  # plain: a local relay or mail catcher
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}


class SetupError(Exception):
    """Something the developer has to fix before `make up` can work; the message says what."""


@dataclass(frozen=True)
class App:
    """A process family: a service (with optional migrations and worker) or the gateway."""

    name: str
    port: int
    migrations: bool = False
    worker: bool = False
    mongodb: bool = False
    mail: bool = False

    @property
    def prefix(self) -> str:
        return self.name.upper().replace("-", "_") + "_"

    @property
    def worker_port(self) -> int:
        return self.port + WORKER_PORT_OFFSET


def dependency_names(pyproject: Path) -> set[str]:
    """The normalised names of a package's dependencies (`beanie>=2.0` -> `beanie`)."""
    project = tomllib.loads(pyproject.read_text()).get("project") or {}
    names = set()
    for requirement in project.get("dependencies") or []:
        if found := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(requirement).strip()):
            names.add(re.sub(r"[-_.]+", "-", found.group(0)).lower())
    return names


def discover() -> list[App]:
    """Every service under services/ plus the gateway (last: it fronts the others)."""
    apps: list[App] = []
    services = ROOT / "services"
    for folder in sorted(services.iterdir()) if services.is_dir() else []:
        if not (folder / "pyproject.toml").is_file():
            continue
        name = folder.name
        dependencies = dependency_names(folder / "pyproject.toml")
        if name not in PORTS:
            raise SetupError(
                f"services/{name} has no port: add it to PORTS in scripts/krika_dev/plan.py"
            )
        apps.append(
            App(
                name=name,
                port=PORTS[name],
                migrations=(folder / "alembic.ini").is_file(),
                worker=(folder / "src" / name / "worker.py").is_file(),
                mongodb=not dependencies.isdisjoint(MONGODB_CLIENTS),
                mail=not dependencies.isdisjoint(SMTP_CLIENTS),
            )
        )
    apps.append(App(name="gateway", port=PORTS["gateway"]))
    return apps


def sidecars(apps: list[App]) -> list[Sidecar]:
    names = {a.name for a in apps}
    return [s for s in SIDECARS if s.service in names and s.exists()]


def asyncpg_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+asyncpg://", url)


def smtp_settings(url: str) -> dict[str, str]:
    """SMTP_URL (`smtp://`, `smtp+starttls://` or `smtps://`, with `user:password@` when the
    relay wants a login) as the <SVC>_SMTP_* settings, without the prefix."""
    parts = urlsplit(url)
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        schemes = ", ".join(f"{s}://" for s in SMTP_SCHEMES)
        raise SetupError(f"SMTP_URL must be {schemes} with a host, e.g. smtp://127.0.0.1:1025")
    security, port = SMTP_SCHEMES[parts.scheme]
    values = {"HOST": parts.hostname, "PORT": str(parts.port or port), "SECURITY": security}
    if parts.username:
        values["USERNAME"] = unquote(parts.username)
        values["PASSWORD"] = unquote(parts.password or "")
    return values


def environment(
    apps: list[App], extra: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Defaults for every process, overridden by whatever `base` (the environment) already sets."""
    base = os.environ if base is None else base
    postgres = asyncpg_url(base.get("POSTGRES_URL", DEFAULT_POSTGRES)).rstrip("/")
    # The developer's MONGODB_URL, else the nx-27017 server the launcher started (`extra`).
    mongodb = base.get("MONGODB_URL") or extra.get("MONGODB_URL")
    # Likewise the developer's SMTP_URL, else the mail catcher's.
    smtp = base.get("SMTP_URL") or extra.get("SMTP_URL")
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
        if app.mongodb and mongodb:
            defaults[f"{p}MONGODB_URL"] = mongodb
        if app.mail and smtp:
            for key, value in smtp_settings(smtp).items():
                defaults[f"{p}SMTP_{key}"] = value
        if app.name != "gateway":
            defaults[f"GATEWAY_{p}URL"] = f"http://127.0.0.1:{app.port}"
            # Uploaded files in development: a directory per service under .local/files.
            defaults[f"{p}STORAGE_URL"] = (LOCAL / "files" / app.name).as_uri()
    defaults["GATEWAY_IDENTITY_URL"] = identity
    defaults["GATEWAY_OPS_PORT"] = str(GATEWAY_OPS_PORT)
    for sidecar in sidecars(apps):
        defaults.update(sidecar.env)
    if "PAYMENTS_PAYSTACK_SECRET_KEY" in extra:
        defaults["PAYSTACK_SANDBOX_SECRET_KEY"] = extra["PAYMENTS_PAYSTACK_SECRET_KEY"]
    return {**defaults, **base}
