"""Fuzz every service's OpenAPI document with schemathesis: directly, and through the gateway.

Services are discovered from `services/*` as `make test` discovers them: a folder with a
`pyproject.toml` whose package has `<name>.app.create_app(settings)` and `<name>.config.Settings`.
Each one gets a fresh database migrated with its own `alembic.ini`, settings built the same way
for all (run-scoped Redis, broker, events exchange, random secrets) plus `SERVICE_OVERRIDES`, and
its own uvicorn on a free port. A gateway fronts them all. Then every operation of every
service's `/openapi.json` (requests to the service) and of the gateway's merged
`/api/openapi.json` (requests to the gateway) gets, in turn:

1. Hypothesis-generated positive and negative examples (`allow_x00`: NUL bytes allowed in
   strings; on top of that, a third of the examples get a NUL in one body or query string);
2. NUL replays: each string an accepted (2xx) example carried, and each string field the
   operation documents, sent once more with a NUL byte (PostgreSQL text refuses NUL, and random
   generation alone produces too few to be relied on);
3. schemathesis's deterministic coverage cases (boundary values, each kind of invalid input,
   undeclared methods and content types).

Each response must pass `CHECKS`: no 5xx, the documented schema, a documented status code and
content type. Every failure is collected; the test fails once, at the end, with one entry per
distinct (target, operation, check, status, kind), its count, and a curl command and the answer
of its first example. The statuses every caller got from every operation are printed as well.

Authentication: each generated example is sent as the admin, the customer or anonymously (drawn
by Hypothesis); coverage cases go as the admin, the caller that gets furthest into every
handler. Bearer tokens come from a fresh login before each operation is fuzzed, so whatever one
operation does to the callers' sessions (a logout, a refresh token spent or reused, an expiry)
cannot turn the following operations into 401s, and nothing has to be excluded from fuzzing; a
login that fails stops the run with the reason instead of silently fuzzing anonymously. Admin
routes that take a `{user_id}` are also offered the ids of a third, "target" account and of the
admin itself, so suspend/roles/reinstate reach real rows (and the cannot-modify-yourself rule)
rather than only 404s; NUL replays use a fourth account no example touches. The customer is never
such a target, and the admin cannot suspend or demote itself. Finally, an operation where no
token was ever accepted (only 401s) fails the run: the harness would not be testing what it
claims.

Bounded and reproducible: `MAX_EXAMPLES` per operation and generation mode, Hypothesis seeded per
(target, operation, mode), no shrinking, no example database: the same code sends the same
requests (up to the accounts' ids and tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import re
import secrets
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import httpx
import hypothesis
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp

from gateway.app import create_app as create_gateway
from gateway.config import RateLimit
from gateway.config import Settings as GatewaySettings
from krika_common.config import KrikaSettings
from krika_common.server import free_port
from krika_common.testing.databases import alembic_upgrade, create_database, drop_database
from krika_common.testing.http import serving
from payments.sandbox.testing import running_sandbox

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"

# Examples per operation and per generation mode (so up to twice this many per operation).
MAX_EXAMPLES = 30
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
CHECKS = (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
)
REQUEST_TIMEOUT = 10.0

# Limits high enough that fuzzing is not mostly 429s.
GENEROUS = 1_000_000

# Per-service settings beyond the generic ones (test speed, throttles). A service whose Settings
# has a `*_url` of its own (a MongoDB, a sandbox...) needs an entry here: the test refuses to let
# it talk to a development default.
SERVICE_OVERRIDES: dict[str, dict[str, Any]] = {
    "identity": {
        "argon2_time_cost": 1,
        "argon2_memory_cost": 1024,
        "argon2_parallelism": 1,
        "login_attempts_per_account_ip": GENEROUS,
        "login_attempts_per_account": GENEROUS,
        "login_attempts_per_ip": GENEROUS,
    },
    "payments": {"checkout_callback_url": "https://app.example.com/orders/{order_id}"},
    "notify": {
        "public_url": "https://app.example.com",
        "api_public_url": "https://api.example.com",
    },
}


@contextlib.contextmanager
def paystack_sandbox() -> Iterator[dict[str, Any]]:
    with running_sandbox() as sandbox:
        yield {"paystack_base_url": sandbox.base_url, "paystack_secret_key": sandbox.secret_key}


# A service that calls an outside API is fuzzed against that API's local stand-in, a real
# process (its settings come from the stand-in), never against the real one or nothing.
STAND_INS: dict[str, Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]] = {
    "payments": paystack_sandbox,
}

# Who sends an example: a role with a fresh bearer token, or nobody.
ADMIN, CUSTOMER, ANONYMOUS = "admin", "customer", "anonymous"
CALLERS = (ADMIN, CUSTOMER, ANONYMOUS)
PASSWORD = "Correct-Horse-42"
ACCOUNTS = {
    ADMIN: "fuzz-admin@example.com",
    CUSTOMER: "fuzz-customer@example.com",
    "target": "fuzz-target@example.com",
    "replay-target": "fuzz-replay-target@example.com",
}


class HarnessError(AssertionError):
    """The system under test could not be set up: a loud failure, never a skip."""


# --------------------------------------------------------------------------------------------
# Discovery and settings


@dataclass(frozen=True)
class Service:
    name: str
    folder: Path
    create_app: Callable[[Any], ASGIApp]
    settings_cls: type[KrikaSettings]


def discover_services() -> list[Service]:
    """Every `services/<name>` with a pyproject.toml; identity first (the others need its JWKS)."""
    found: list[Service] = []
    for folder in sorted(p for p in SERVICES_DIR.iterdir() if (p / "pyproject.toml").is_file()):
        name = folder.name
        where = f"services/{name}"
        for module in ("app", "config"):
            if not (folder / "src" / name / f"{module}.py").is_file():
                raise HarnessError(f"{where}: no src/{name}/{module}.py")
        try:
            app_module = importlib.import_module(f"{name}.app")
            config_module = importlib.import_module(f"{name}.config")
        except ImportError as exc:
            raise HarnessError(f"{where}: cannot import it ({exc}); run `make sync`") from exc
        create_app = getattr(app_module, "create_app", None)
        settings_cls = getattr(config_module, "Settings", None)
        if not callable(create_app):
            raise HarnessError(f"{where}: {name}.app has no create_app(settings)")
        if not (isinstance(settings_cls, type) and issubclass(settings_cls, KrikaSettings)):
            raise HarnessError(f"{where}: {name}.config.Settings is not a KrikaSettings")
        found.append(Service(name, folder, create_app, settings_cls))
    if "identity" not in {s.name for s in found}:
        raise HarnessError("services/identity not found: every other service needs its tokens")
    return sorted(found, key=lambda s: s.name != "identity")


def build_settings(service: Service, generic: Mapping[str, Any]) -> KrikaSettings:
    """`generic` values, a random value for every secret, then the service's overrides."""
    cls = service.settings_cls
    where = f"services/{service.name}"
    try:
        secret_names = list(cls(environment="development").secret_fields())
    except ValidationError as exc:
        raise HarnessError(f"{where}: its development Settings do not build:\n{exc}") from exc
    overrides = SERVICE_OVERRIDES.get(service.name, {})
    unknown = sorted(set(overrides) - set(cls.model_fields))
    if unknown:
        raise HarnessError(f"{where}: SERVICE_OVERRIDES names unknown settings {unknown}")
    # Random secrets, but the generic ones (the edge secret the gateway shares) win.
    values = {**{n: secrets.token_urlsafe(32) for n in secret_names}, **generic, **overrides}
    # The base class's URLs are set generically; a service's own must not keep a dev default.
    own_urls = sorted(
        name
        for name in cls.model_fields
        if name.endswith("_url") and name not in KrikaSettings.model_fields and name not in values
    )
    if own_urls:
        raise HarnessError(
            f"{where}: Settings {own_urls} would point at development defaults; give them test "
            f"values in SERVICE_OVERRIDES[{service.name!r}] in tests/test_api_fuzz.py"
        )
    try:
        return cls(**values)
    except ValidationError as exc:
        raise HarnessError(f"{where}: its test Settings do not build:\n{exc}") from exc


# --------------------------------------------------------------------------------------------
# The running system


@dataclass(frozen=True)
class Target:
    """What one schemathesis run fuzzes: a spec and where its requests go."""

    name: str
    spec_url: str
    base_url: str


@dataclass
class System:
    service_urls: dict[str, str]
    gateway_url: str
    identity_url: str
    # Path parameter name -> real values offered to positive examples (besides generated ones).
    known_path_values: dict[str, list[str]]
    # Path parameter name -> the value NUL replays use instead (a row no example has touched).
    replay_path_values: dict[str, str]

    def targets(self) -> list[Target]:
        direct = [
            Target(f"{name} (direct)", f"{url}/openapi.json", url)
            for name, url in self.service_urls.items()
        ]
        gateway = Target("gateway", f"{self.gateway_url}/api/openapi.json", self.gateway_url)
        return [*direct, gateway]

    def login_all(self) -> dict[str, str]:
        """Fresh access tokens for the callers (sync: runs on the fuzzing thread)."""
        tokens: dict[str, str] = {}
        with httpx.Client(base_url=self.identity_url, timeout=REQUEST_TIMEOUT) as client:
            for who in (ADMIN, CUSTOMER):
                response = client.post(
                    "/auth/login", json={"email": ACCOUNTS[who], "password": PASSWORD}
                )
                if response.status_code != 200:
                    raise HarnessError(
                        f"the {who} can no longer log in ({response.status_code} "
                        f"{response.text[:200]}): the fuzzer changed its account"
                    )
                tokens[who] = response.json()["access_token"]
        return tokens


async def create_accounts(identity_url: str, database_url: str) -> dict[str, str]:
    """Register the admin, customer and target accounts; make the admin one. Returns their ids."""
    ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=identity_url, timeout=REQUEST_TIMEOUT) as client:
        for who, email in ACCOUNTS.items():
            response = await client.post(
                "/auth/register",
                json={
                    "email": email,
                    "password": PASSWORD,
                    "full_name": f"Fuzz {who}",
                    "role": "customer",
                },
            )
            if response.status_code != 201:
                raise HarnessError(f"registering the {who}: {response.status_code} {response.text}")
            ids[who] = response.json()["id"]
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            "UPDATE users SET roles = ARRAY['admin'] WHERE email = $1", ACCOUNTS[ADMIN]
        )
    finally:
        await conn.close()
    return ids


@pytest_asyncio.fixture
async def system(
    postgres_server_url: str,
    redis_url: str,
    amqp_url: str,
    mongodb_url: str,
    events_exchange: str,
    run_id: str,
    redis_client: object,  # flushes this run's Redis database first
    _events_exchange_cleanup: None,  # deletes the run's exchange if a service declared it
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[System]:
    services = discover_services()
    generic: dict[str, Any] = {
        "environment": "test",
        "redis_url": redis_url,
        "amqp_url": amqp_url,
        "events_exchange": events_exchange,
        "log_level": "WARNING",
        # One edge secret for the gateway and every service: requests through the gateway
        # carry its client's IP, request id and trace as in production.
        "edge_secret": secrets.token_urlsafe(32),
    }
    gateway_fields = GatewaySettings.model_fields
    for service in services:
        if f"{service.name}_url" not in gateway_fields:
            raise HarnessError(
                f"services/{service.name}: the gateway has no `{service.name}_url` setting, so "
                "it cannot route to it (gateway/src/gateway/config.py and routes.py)"
            )
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        database_urls: dict[str, str] = {}
        for service in services:
            db_name = f"test_fuzz_{service.name}_{run_id}"
            database_url = await create_database(postgres_server_url, db_name)
            stack.push_async_callback(drop_database, postgres_server_url, db_name)
            alembic_ini = service.folder / "alembic.ini"
            if alembic_ini.is_file():  # else the service keeps no tables: an empty database
                # Alembic's env runs its own event loop: keep it off ours.
                await asyncio.to_thread(alembic_upgrade, alembic_ini, database_url)
            values = {**generic, "database_url": database_url}
            if "storage_url" in service.settings_cls.model_fields:  # it keeps uploaded files
                values["storage_url"] = tmp_path_factory.mktemp(f"{service.name}-files").as_uri()
            if "mongodb_url" in service.settings_cls.model_fields:  # chat: the Mongo-wire server
                values["mongodb_url"] = mongodb_url
                values["mongodb_database"] = f"test_fuzz_{service.name}_{run_id}"
            if "identity" in urls:
                values["jwks_url"] = f"{urls['identity']}/.well-known/jwks.json"
            if service.name in STAND_INS:
                values.update(stack.enter_context(STAND_INS[service.name]()))
            app = service.create_app(build_settings(service, values))
            urls[service.name] = await stack.enter_async_context(serving(app))
            database_urls[service.name] = database_url

        ids = await create_accounts(urls["identity"], database_urls["identity"])

        # Upstreams the gateway knows but that are not under test point at a closed port, never
        # at a development default (a `make up` running next to the tests).
        closed = f"http://127.0.0.1:{free_port()}"
        gateway_values: dict[str, Any] = {
            f"{name}_url": urls.get(name, closed) for name in GatewaySettings().service_urls()
        }
        gateway_values.update(
            environment="test",
            redis_url=redis_url,
            jwks_url=f"{urls['identity']}/.well-known/jwks.json",
            consume_events=False,
            rate_limit_default=RateLimit(per_user=GENEROUS, per_ip=GENEROUS),
            rate_limits={},
            tune_gc=False,  # gc.freeze() would reach into the whole pytest process
            access_log=False,
            log_level="WARNING",
            edge_secret=generic["edge_secret"],
        )
        gateway = create_gateway(GatewaySettings(**gateway_values))
        gateway_url = await stack.enter_async_context(serving(gateway))

        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            merged = (await client.get(f"{gateway_url}/api/openapi.json")).json()
        states = merged.get("x-krika-services", {})
        missing = [name for name in urls if states.get(name) != "up"]
        if missing:
            raise HarnessError(f"the gateway's merged OpenAPI lacks {missing}: {states}")

        yield System(
            service_urls=urls,
            gateway_url=gateway_url,
            identity_url=urls["identity"],
            known_path_values={"user_id": [ids["target"], ids[ADMIN]]},
            replay_path_values={"user_id": ids["replay-target"]},
        )


# --------------------------------------------------------------------------------------------
# Fuzzing and the report

AnyCase: TypeAlias = schemathesis.Case[Any]
AnyOperation: TypeAlias = schemathesis.APIOperation[Any, Any, Any, Any]


@dataclass
class Finding:
    """One distinct failure: the first example and how often it came back."""

    target: str
    operation: str
    check: str
    status: int | None
    kind: str
    message: str
    caller: str
    mode: str
    curl: str
    response: str
    count: int = 1
    callers: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)


@dataclass
class Report:
    findings: dict[tuple[str, str, str, int | None, str], Finding] = field(default_factory=dict)
    # (target, operation) -> caller -> status -> count: what was really exercised.
    statuses: dict[tuple[str, str], dict[str, Counter[int]]] = field(default_factory=dict)
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        key = (finding.target, finding.operation, finding.check, finding.status, finding.kind)
        seen = self.findings.get(key)
        if seen is None:
            self.findings[key] = seen = finding
        else:
            seen.count += 1
        seen.callers.add(finding.caller)
        seen.modes.add(finding.mode)

    def answered(self, target: str, operation: str, caller: str, status: int) -> None:
        self.requests += 1
        by_caller = self.statuses.setdefault((target, operation), {})
        by_caller.setdefault(caller, Counter())[status] += 1

    def never_authenticated(self) -> list[str]:
        """Operations where no request with a token got past a 401: the harness's tokens are
        not accepted there, so the run would not be testing what it claims to."""
        return [
            f"[{target}] {operation}: {dict(by_caller)}"
            for (target, operation), by_caller in self.statuses.items()
            if all(set(by_caller.get(who, {})) <= {401} for who in (ADMIN, CUSTOMER))
            and any(by_caller.get(who) for who in (ADMIN, CUSTOMER))
        ]

    def coverage(self) -> str:
        """One line per operation: the statuses each caller got."""
        lines = []
        for (target, operation), by_caller in sorted(self.statuses.items()):
            seen = "; ".join(
                f"{who} " + ",".join(f"{code}x{n}" for code, n in sorted(by_caller[who].items()))
                for who in CALLERS
                if who in by_caller
            )
            lines.append(f"  [{target}] {operation}: {seen}")
        return "\n".join(lines)

    def summary(self) -> str:
        operations = len(self.statuses)
        lines = [
            f"schemathesis found {len(self.findings)} distinct failure(s) in {self.requests} "
            f"requests over {operations} operations "
            "(target | operation | check | status | kind (count; modes; callers))"
        ]
        for f in sorted(
            self.findings.values(),
            key=lambda f: (f.target, f.operation, f.check, f.status or 0, f.kind),
        ):
            lines.append("")
            lines.append(
                f"[{f.target}] {f.operation} | {f.check} | {f.status or '-'} | {f.kind} "
                f"({f.count}x; {'/'.join(sorted(f.modes))}; as {'/'.join(sorted(f.callers))})"
            )
            if f.message:
                lines.append(textwrap.indent(f.message, "    "))
            lines.append(f"    e.g. as {f.caller}: {f.curl}")
            if f.response:
                lines.append(f"    -> {f.response}")
        return "\n".join(lines)


def _printable(text: str, limit: int) -> str:
    """One line, control characters (NUL...) escaped, cut at `limit`."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.replace("\n", " "))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _short(message: str) -> str:
    lines = [line for line in message.strip().splitlines() if line.strip()][:4]
    return "\n".join(_printable(line, 160) for line in lines)


def _known_path_values(
    operation: AnyOperation, known: Mapping[str, Sequence[str]]
) -> list[dict[str, str]]:
    """Path parameter sets made of real values, for operations with one known path parameter."""
    names = re.findall(r"{([^}/]+)}", operation.path)
    if len(names) != 1 or names[0] not in known:
        return []
    return [{names[0]: value} for value in known[names[0]]]


def fuzz(system: System, report: Report) -> None:
    """Fuzz every target (blocking: run it off the event loop that serves the system)."""
    for target in system.targets():
        started = time.monotonic()
        fuzz_target(system, target, report)
        report.seconds[target.name] = time.monotonic() - started


def fuzz_target(system: System, target: Target, report: Report) -> None:
    config = schemathesis.Config()  # not .discover(): no schemathesis.toml can change the run
    config.projects.default.generation.update(
        modes=list(MODES),
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        no_shrink=True,
        database="none",
        allow_x00=True,  # NUL bytes in generated strings (the default, made explicit)
        # Our own tokens go in the Authorization header; none are generated.
        with_security_parameters=False,
    )
    # Reproductions show the (throwaway) passwords they need; tokens are shown as placeholders.
    config.output.sanitization.update(enabled=False)
    schema = schemathesis.openapi.from_url(target.spec_url, config=config, timeout=REQUEST_TIMEOUT)
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            report.add(_harness_finding(target, "?", "invalid operation", result.err()))
            continue
        operation = result.ok()
        tokens = system.login_all()  # fresh for each operation (see the module docstring)
        accepted = Accepted()
        for mode in MODES:
            strategies = [operation.as_strategy(generation_mode=mode)]
            if mode is schemathesis.GenerationMode.POSITIVE:
                strategies += [
                    operation.as_strategy(generation_mode=mode, path_parameters=values)
                    for values in _known_path_values(operation, system.known_path_values)
                ]
            try:
                seed = f"{target.name} {operation.label} {mode.value}"
                run_examples(target, tokens, st.one_of(strategies), report, accepted, seed)
            except hypothesis.errors.Unsatisfiable:
                pass  # negative mode on an operation with nothing that can be made invalid
            except HarnessError:
                raise
            except Exception as exc:  # the generator choked on the spec: report, go on
                report.add(_harness_finding(target, operation.label, f"{mode.value} mode", exc))
        # NUL replays: every string an accepted request carried (body or query), and every string
        # field the operation documents, is sent once more with a NUL byte, by the same caller and
        # otherwise unchanged: a systematic pass over what reaches the handlers and the database,
        # where random NULs are too rare to rely on.
        replays = dict(accepted.by_leaf)
        documented = _documented_string_fields(schema.raw_schema, operation)
        if accepted.first is not None:
            for leaf in documented:
                replays.setdefault(leaf, accepted.first)
        for leaf, (case, caller) in replays.items():
            replay_nul(system, target, case, caller, leaf, documented, tokens, report)
        # Then schemathesis's coverage cases: deterministic boundary values, each kind of invalid
        # input, undeclared methods and content types. Sent as the admin, the caller that gets
        # furthest into every handler.
        generation = schema.config.generation_for(operation=operation, phase="coverage")
        try:
            for case in schema.iter_coverage_cases(
                operation, generation_modes=list(MODES), generation_config=generation
            ):
                exercise(target, case, ADMIN, tokens, report)
        except Exception as exc:
            report.add(_harness_finding(target, operation.label, "coverage", exc))


_FRESH = itertools.count(1)


def replay_nul(
    system: System,
    target: Target,
    case: AnyCase,
    caller: str,
    leaf: Leaf,
    documented: Sequence[Leaf],
    tokens: Mapping[str, str],
    report: Report,
) -> None:
    """Send an accepted example again with a NUL at `leaf`. Its path ids are swapped for rows no
    example has touched (a second suspend, say, writes nothing); a 409 (its e-mail is taken now)
    is retried once with the other documented strings made unique."""
    variant = case.derive()
    if not _put_nul(variant, leaf):
        return
    variant.path_parameters = {
        name: system.replay_path_values.get(name, value)
        for name, value in variant.path_parameters.items()
    }
    status = exercise(target, variant, caller, tokens, report, extra="+NUL replay")
    if status != 409:
        return
    prefix = f"u{next(_FRESH)}"
    for where, path in documented:
        container = variant.body if where == "body" else variant.query
        value = _child(container, path[0]) if len(path) == 1 else None
        if (where, path) != leaf and isinstance(value, str):
            if where == "body":
                variant.body = _replace(variant.body, path, prefix + value)
            else:
                variant.query = _replace(variant.query, path, prefix + value)
    exercise(target, variant, caller, tokens, report, extra="+NUL replay")


def _harness_finding(target: Target, operation: str, what: str, exc: BaseException) -> Finding:
    return Finding(
        target=target.name,
        operation=operation,
        check="generation",
        status=None,
        kind=type(exc).__name__,
        message=_short(str(exc)),
        caller="-",
        mode=what,
        curl="(no request)",
        response="",
    )


def run_examples(
    target: Target,
    tokens: Mapping[str, str],
    cases: st.SearchStrategy[AnyCase],
    report: Report,
    accepted: Accepted,
    seed: str,
) -> None:
    """Hypothesis-generated examples; the ones answered with a 2xx go to `accepted`. `seed`
    fixes what is generated (a different one per target, operation and mode, so the gateway
    does not replay the very requests the service got, e.g. only taken e-mails)."""

    @hypothesis.seed(zlib.crc32(seed.encode()))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=cases, caller=st.sampled_from(CALLERS), data=st.data())
    def examples(case: AnyCase, caller: str, data: st.DataObject) -> None:
        nul = inject_nul(case, data)
        status = exercise(target, case, caller, tokens, report, extra="+NUL" if nul else "")
        if status is not None and status < 300 and not nul:
            accepted.add(case, caller)

    examples()


JsonPath: TypeAlias = tuple[str | int, ...]


def _string_leaves(value: Any, path: JsonPath = ()) -> list[JsonPath]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _string_leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _string_leaves(v, (*path, i))]
    return []


def _replace(value: Any, path: JsonPath, new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    items = list(value)
    items[int(head)] = _replace(items[int(head)], rest, new)
    return items


Leaf: TypeAlias = tuple[str, JsonPath]  # ("body" | "query", path to a string)


@dataclass
class Accepted:
    """Examples of one operation answered with a 2xx: the first one, and per string leaf the
    first one carrying it (with their callers)."""

    first: tuple[AnyCase, str] | None = None
    by_leaf: dict[Leaf, tuple[AnyCase, str]] = field(default_factory=dict)

    def add(self, case: AnyCase, caller: str) -> None:
        if self.first is None:
            self.first = (case, caller)
        for leaf in _leaves(case):
            self.by_leaf.setdefault(leaf, (case, caller))


def _leaves(case: AnyCase) -> list[Leaf]:
    body = case.body if isinstance(case.body, dict | list) else None
    return [("body", path) for path in _string_leaves(body)] + [
        ("query", path) for path in _string_leaves(case.query or {})
    ]


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _put_nul(case: AnyCase, leaf: Leaf, at: int | None = None) -> bool:
    """Put a NUL in the string at `leaf`, replacing the character at `at` (default: the middle);
    a missing or non-string value becomes a string with a NUL. False: `leaf` cannot be set."""
    where, path = leaf
    parent: Any = case.body if where == "body" else case.query
    for key in path[:-1]:
        parent = _child(parent, key)
    settable = isinstance(parent, dict) or (
        isinstance(parent, list) and bool(path) and isinstance(path[-1], int)
    )
    if not path or not settable or (isinstance(parent, list) and _child(parent, path[-1]) is None):
        return False
    old = _child(parent, path[-1])
    if isinstance(old, str):
        at = len(old) // 2 if at is None else at
        new = old[:at] + "\x00" + old[at + 1 :]
    else:
        new = "nul\x00byte"
    if where == "body":
        case.body = _replace(case.body, path, new)
    else:
        case.query = _replace(case.query, path, new)
    return True


def _documented_string_fields(raw: Mapping[str, Any], operation: AnyOperation) -> list[Leaf]:
    """The query parameters and top-level JSON body properties documented as (possibly) strings,
    enums left out (a NUL there can only be a 422)."""
    components = raw.get("components", {}).get("schemas", {})

    def resolve(node: Any) -> Any:
        for _ in range(10):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                break
            node = components.get(node["$ref"].rsplit("/", 1)[-1])
        return node

    def takes_string(node: Any) -> bool:
        node = resolve(node)
        if not isinstance(node, dict) or "enum" in node or "const" in node:
            return False
        types = node.get("type")
        if types == "string" or (isinstance(types, list) and "string" in types):
            return True
        return any(takes_string(n) for key in ("anyOf", "oneOf") for n in node.get(key) or [])

    definition = operation.definition.raw
    leaves: list[Leaf] = [
        ("query", (parameter["name"],))
        for parameter in map(resolve, definition.get("parameters") or [])
        if isinstance(parameter, dict)
        and parameter.get("in") == "query"
        and takes_string(parameter.get("schema"))
    ]
    content = (definition.get("requestBody") or {}).get("content") or {}
    body = resolve((content.get("application/json") or {}).get("schema"))
    if isinstance(body, dict):
        leaves += [
            ("body", (name,))
            for name, prop in (body.get("properties") or {}).items()
            if takes_string(prop)
        ]
    return leaves


def inject_nul(case: AnyCase, data: st.DataObject) -> bool:
    """In a third of the examples, put a NUL byte into one string of the JSON body or the query.

    `allow_x00` lets the generator produce NULs, but in a few examples per hundred at most,
    and schemathesis's type-wide dictionaries skip the `anyOf: [string, null]` schemas FastAPI
    gives optional fields. NUL is what PostgreSQL text refuses, so every string that may be
    stored or queried deserves one (see also the NUL replays in `fuzz_target`).
    """
    if data.draw(st.integers(0, 2), label="inject a NUL") != 0:
        return False
    leaves = _leaves(case)
    if not leaves:
        return False
    leaf = data.draw(st.sampled_from(leaves), label="NUL goes into")
    old: Any = case.body if leaf[0] == "body" else case.query
    for key in leaf[1]:
        old = old[key]
    _put_nul(case, leaf, at=data.draw(st.integers(0, len(old)), label="NUL position"))
    return True


def exercise(
    target: Target,
    case: AnyCase,
    caller: str,
    tokens: Mapping[str, str],
    report: Report,
    extra: str = "",
) -> int | None:
    """Send one case as `caller`; record every check that fails. Returns the status (None: no
    answer); never raises."""
    headers = {"Authorization": f"Bearer {tokens[caller]}"} if caller in tokens else {}
    meta = case.meta
    mode = f"{meta.phase.name.value}/{meta.generation.mode.value}" if meta is not None else "?"
    mode += extra

    def found(check: str, status: int | None, kind: str, message: str, response: str) -> None:
        placeholder = {"Authorization": f"Bearer <{caller} token>"} if headers else {}
        try:
            curl = case.as_curl_command(headers=placeholder, base_url=target.base_url)
        except Exception as exc:  # the reproduction must not hide the finding
            curl = f"(no curl: {type(exc).__name__}: {exc})"
        report.add(
            Finding(
                target=target.name,
                operation=case.operation.label,
                check=check,
                status=status,
                kind=kind,
                message=_short(message),
                caller=caller,
                mode=mode,
                curl=_printable(curl, 600),
                response=response,
            )
        )

    try:
        response = case.call(base_url=target.base_url, headers=headers, timeout=REQUEST_TIMEOUT)
    except Exception as exc:  # no response at all: a dropped connection, a timeout...
        found("request", None, type(exc).__name__, str(exc), "")
        return None
    report.answered(target.name, case.operation.label, caller, response.status_code)
    content_type = ", ".join(response.headers.get("content-type", [])) or "no content-type"
    body = _printable(response.content.decode("utf-8", "replace"), 200)
    answer = f"{response.status_code} {content_type}: {body}"
    transport = {"base_url": target.base_url, "headers": headers}
    for check in CHECKS:
        failures: Sequence[Failure] = ()
        try:
            case.validate_response(
                response, checks=[check], headers=headers, transport_kwargs=transport
            )
        except FailureGroup as group:
            failures = group.exceptions
        except Failure as single:
            failures = [single]
        for failure in failures:
            found(check.__name__, response.status_code, failure.title, failure.message, answer)
    return response.status_code


async def test_every_operation_survives_fuzzing(system: System) -> None:
    """No 5xx, and answers as documented, for everything the fuzzer sends to any service."""
    report = Report()
    await asyncio.to_thread(fuzz, system, report)
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.seconds.items())
    print(f"{report.requests} requests ({timings}); statuses per operation and caller:")
    print(report.coverage())
    problems = []
    if stranded := report.never_authenticated():
        problems.append("the callers' tokens were never accepted by:\n" + "\n".join(stranded))
    if report.findings:
        problems.append(report.summary())
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
