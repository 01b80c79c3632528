"""The deploy files keep up with the services: every service under services/, and the gateway,
has its entries in docker-stack.yml, a Prometheus scrape job and panels on the Grafana dashboard.

Pure file checks, no servers. Services are found the way the launcher finds them: a folder
services/<svc> with a pyproject.toml is a service, an alembic.ini gives it migrations (and a
PostgreSQL database with the outbox), src/<svc>/worker.py a worker, and a dependency on a MongoDB
client (beanie, pymongo, motor: scripts/krika_dev/plan.py MONGODB_CLIENTS) a MongoDB database.
Ports come from scripts/krika_dev/plan.py (PORTS, WORKER_PORT_OFFSET, GATEWAY_OPS_PORT), read from
its source.

For each service:

- docker-stack.yml: a `<svc>` service running `python -m <svc>`; with migrations, a
  `<svc>-migrate` one-off job (restart_policy condition `none`) running
  `alembic -c services/<svc>/alembic.ini upgrade ...`; with a worker, a `<svc>-worker` running
  `python -m <svc>.worker`. A `<SVC>_PORT` / `<SVC>_WORKER_PORT` set there must be the port that
  Prometheus scrapes. The service and its worker are told where their database is
  (`<SVC>_DATABASE_URL` with migrations, `<SVC>_MONGODB_URL` on MongoDB; each may be a `_FILE`),
  and every `/run/secrets/<name>` their variables name is among their secrets. The gateway
  reaches the service at `http://<svc>:<port>` (`GATEWAY_<SVC>_URL`): without it, it would
  forward to its own 127.0.0.1.
- deploy/prometheus/prometheus.yml: a job scraping `tasks.<svc>` (Swarm's DNS name for all of a
  service's tasks) on the service's port, and `tasks.<svc>-worker` on that port + 1000. The gateway
  is scraped on its operations port: its public port serves no /metrics.
- deploy/grafana/dashboards/krika-services.json. The dashboard does not list services: its panels
  select series by the `service` label (`service=~"$service"`), and the `service` template
  variable takes every value of `label_values(http_requests_total, service)` (All: `.*`). A
  process labels its metrics with its settings' `service_name` (the worker's own HTTP metrics:
  `<svc>-worker`; the outbox metrics it exports: `<svc>`). So a service is covered when its
  `service_name` is its folder name, the template variables its queries use can take the label
  value (a label_values query over a metric it exports, with a regex filter, if any, that keeps
  it; or a custom list naming it), and for each metric family the process exports (HTTP request
  rate and latency for every process; outbox backlog and lag for a service whose worker relays a
  PostgreSQL outbox), some visible panel query selects it once the variables are substituted. A
  dashboard with one panel per service (`service="<svc>"`) passes the same check. The gateway
  also needs panels of its own: queries selecting `service="gateway"`.

Every dashboard under deploy/grafana/dashboards is mounted into Grafana by docker-stack.yml (a
config targeting /etc/grafana/dashboards/<file>) and uses only the provisioned datasource uid.

Secrets and databases: deploy/create-secrets.sh, run against a stand-in `docker` on a new swarm,
creates every secret docker-stack.yml declares; deploy/postgres/init-databases.sql creates the
`krika_<svc>` database of every service with migrations; identity and notify get the one link
key (identity seals with its public half what notify opens with it) from the same secret.

Each test lists everything missing for its service, in one message.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, no stubs (uvicorn[standard] brings it)

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "docker-stack.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "krika-services.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DEV = ROOT / "scripts" / "krika_dev" / "plan.py"
CREATE_SECRETS = ROOT / "deploy" / "create-secrets.sh"
INIT_DATABASES = ROOT / "deploy" / "postgres" / "init-databases.sql"

# What every process exports through krika_common.telemetry (label `service`), and what a worker's
# outbox relay exports under the service's name.
HTTP_METRICS = ("http_requests_total", "http_request_duration_seconds")
OUTBOX_METRICS = ("krika_outbox_pending", "krika_outbox_oldest_pending_seconds")

SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def dev_constants() -> dict[str, Any]:
    """The launcher's literal constants (scripts/krika_dev/plan.py), read without running it."""
    constants: dict[str, Any] = {}
    for node in ast.parse(DEV.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            with contextlib.suppress(ValueError):  # not a literal: not needed here
                constants[target.id] = ast.literal_eval(value)
    return constants


def uses_mongodb(svc: str, clients: frozenset[str]) -> bool:
    """Does services/<svc> depend on a MongoDB client (as the launcher decides)?"""
    pyproject = tomllib.loads((ROOT / "services" / svc / "pyproject.toml").read_text())
    for requirement in (pyproject.get("project") or {}).get("dependencies") or []:
        found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(requirement).strip())
        if found and re.sub(r"[-_.]+", "-", found.group(0)).lower() in clients:
            return True
    return False


@dataclass(frozen=True)
class Deploy:
    stack: dict[str, Any]  # docker-stack.yml's `services`
    scrapes: dict[tuple[str, int], str]  # (host, port) -> Prometheus job name
    dashboard: dict[str, Any]
    ports: dict[str, int]
    worker_offset: int
    gateway_ops_port: int
    mongodb_clients: frozenset[str]


@pytest.fixture(scope="module")
def deploy() -> Deploy:
    stack = yaml.safe_load(STACK.read_text())
    scrapes: dict[tuple[str, int], str] = {}
    for job in yaml.safe_load(PROMETHEUS.read_text()).get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            for name in sd.get("names") or []:
                scrapes[(name, int(sd["port"]))] = job["job_name"]
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                scrapes[(host, int(port))] = job["job_name"]
    dev = dev_constants()
    return Deploy(
        stack=stack.get("services") or {},
        scrapes=scrapes,
        dashboard=json.loads(DASHBOARD.read_text()),
        ports=dev["PORTS"],
        worker_offset=dev["WORKER_PORT_OFFSET"],
        gateway_ops_port=dev["GATEWAY_OPS_PORT"],
        mongodb_clients=frozenset(dev["MONGODB_CLIENTS"]),
    )


# ------------------------------------------------------------------ docker-stack.yml


def command_of(entry: dict[str, Any]) -> list[str]:
    command = entry.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def runs_module(command: list[str], module: str) -> bool:
    """`python -m <module>` somewhere in the command (python, python3, /path/to/python...)."""
    return any(
        Path(command[i]).name.startswith("python") and command[i + 1 : i + 3] == ["-m", module]
        for i in range(len(command) - 2)
    )


def environment_of(entry: dict[str, Any]) -> dict[str, str]:
    env = entry.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {str(k): str(v) for k, v in env.items()}


def secrets_of(entry: dict[str, Any]) -> set[str]:
    """The secrets a stack entry mounts, by the file name they get under /run/secrets."""
    names = set()
    for item in entry.get("secrets") or []:
        if isinstance(item, dict):
            names.add(str(item.get("target") or item.get("source")))
        else:
            names.add(str(item))
    return names


def secret_problems(name: str, entry: dict[str, Any]) -> Iterator[str]:
    """Every /run/secrets/<file> a variable names is mounted: else the entrypoint stops there."""
    mounted = secrets_of(entry)
    for variable, value in sorted(environment_of(entry).items()):
        found = re.fullmatch(r"/run/secrets/([\w.-]+)", value.strip())
        if found and found.group(1) not in mounted:
            yield (
                f"docker-stack.yml: `{name}` sets {variable}={value} but does not mount the"
                f" secret `{found.group(1)}`"
            )


def database_problems(deploy: Deploy, svc: str, name: str, entry: dict[str, Any]) -> Iterator[str]:
    """The process is told where its database is (else it would use its development default)."""
    prefix = svc.upper().replace("-", "_")
    env = environment_of(entry)
    wanted = []
    if (ROOT / "services" / svc / "alembic.ini").is_file():
        wanted.append(("DATABASE_URL", "PostgreSQL"))
    if uses_mongodb(svc, deploy.mongodb_clients):
        wanted.append(("MONGODB_URL", "MongoDB"))
    for setting, kind in wanted:
        variable = f"{prefix}_{setting}"
        if variable not in env and f"{variable}_FILE" not in env:
            yield f"docker-stack.yml: `{name}` sets neither {variable} nor {variable}_FILE ({kind})"


def stack_problems(deploy: Deploy, svc: str, port: int) -> Iterator[str]:
    where = "docker-stack.yml"
    folder = ROOT / "services" / svc
    prefix = svc.upper().replace("-", "_")

    entry = deploy.stack.get(svc)
    if entry is None:
        yield f"{where}: no `{svc}` service (running `python -m {svc}`)"
    else:
        if not runs_module(command_of(entry), svc):
            yield f"{where}: `{svc}` does not run `python -m {svc}` (command: {command_of(entry)})"
        listens = environment_of(entry).get(f"{prefix}_PORT")
        if listens is not None and listens != str(port):
            yield f"{where}: `{svc}` listens on {prefix}_PORT={listens}, not {port} (PORTS)"
        yield from database_problems(deploy, svc, svc, entry)
        yield from secret_problems(svc, entry)

    gateway = deploy.stack.get("gateway")
    if gateway is not None:
        upstream = environment_of(gateway).get(f"GATEWAY_{prefix}_URL")
        expected = f"http://{svc}:{port}"
        if upstream is None or upstream.rstrip("/") != expected:
            yield (
                f"{where}: the gateway has GATEWAY_{prefix}_URL={upstream}, not {expected} (its"
                " default is 127.0.0.1, the gateway's own container)"
            )

    if (folder / "alembic.ini").is_file():
        name, ini = f"{svc}-migrate", f"services/{svc}/alembic.ini"
        job = deploy.stack.get(name)
        if job is None:
            yield f"{where}: no `{name}` one-off job ({ini} exists)"
        else:
            command = command_of(job)
            runs_alembic = any(Path(c).name == "alembic" for c in command) or runs_module(
                command, "alembic"
            )
            with_ini = (
                any(
                    command[i] in ("-c", "--config") and command[i + 1] == ini
                    for i in range(len(command) - 1)
                )
                or f"--config={ini}" in command
            )
            if not (runs_alembic and with_ini and "upgrade" in command):
                yield f"{where}: `{name}` does not run `alembic -c {ini} upgrade` ({command})"
            yield from secret_problems(name, job)
            condition = ((job.get("deploy") or {}).get("restart_policy") or {}).get("condition")
            if condition != "none":
                yield (
                    f"{where}: `{name}` is not a one-off job: deploy.restart_policy.condition"
                    f" is {condition!r}, not 'none'"
                )

    if (folder / "src" / svc / "worker.py").is_file():
        name, module, worker_port = f"{svc}-worker", f"{svc}.worker", port + deploy.worker_offset
        worker = deploy.stack.get(name)
        if worker is None:
            yield f"{where}: no `{name}` service (src/{svc}/worker.py exists)"
        else:
            if not runs_module(command_of(worker), module):
                yield f"{where}: `{name}` does not run `python -m {module}` ({command_of(worker)})"
            listens = environment_of(worker).get(f"{prefix}_WORKER_PORT")
            if listens is not None and listens != str(worker_port):
                yield (
                    f"{where}: `{name}` listens on {prefix}_WORKER_PORT={listens},"
                    f" not {worker_port} (port + {deploy.worker_offset})"
                )
            yield from database_problems(deploy, svc, name, worker)
            yield from secret_problems(name, worker)


# ------------------------------------------------------------------ prometheus.yml


def scrape_problem(deploy: Deploy, name: str, port: int, why: str) -> Iterator[str]:
    host = f"tasks.{name}"
    if (host, port) not in deploy.scrapes:
        elsewhere = sorted(p for h, p in deploy.scrapes if h == host)
        on = f" (it is scraped on {elsewhere})" if elsewhere else ""
        yield (
            f"deploy/prometheus/prometheus.yml: no scrape job for {host} on port {port} ({why}){on}"
        )


# ------------------------------------------------------------------ Grafana dashboard

SELECTOR = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)")
LABEL_VALUES = re.compile(r"label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$")
NEVER = "\x00"  # what a variable that cannot take the value becomes: matches no service


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels") or [])  # a collapsed row holds its panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every visible query."""
    for panel in panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr") and not target.get("hide"):
                yield str(panel.get("title")), str(target["expr"])


def selected(selector: str, label_value: str, variables: dict[str, Any]) -> bool:
    """Does `{...}` (with the dashboard's variables) select series with service=<label_value>?"""

    def substitute(value: str, regex: bool) -> str:
        def one(match: re.Match[str]) -> str:
            name = next(g for g in match.groups() if g)
            if name.startswith("__") or name not in variables:
                return match.group(0)  # a Grafana built-in or unknown: left as written
            if not variable_takes(variables[name], label_value, variables):
                return NEVER
            return re.escape(label_value) if regex else label_value

        return VARIABLE.sub(one, value)

    for label, op, value in MATCHER.findall(selector):
        if label != "service":
            continue
        wanted = substitute(value, regex=op in ("=~", "!~"))
        matches = (
            re.fullmatch(wanted, label_value) is not None
            if op in ("=~", "!~")
            else wanted == label_value
        )
        if matches == op.startswith("!"):
            return False
    return True


def selects(expr: str, family: str, label_value: str, variables: dict[str, Any]) -> bool:
    """Does the PromQL select series of this metric family with service=<label_value>?"""
    return any(
        metric in (family, f"{family}_bucket", f"{family}_count", f"{family}_sum")
        and selected(braces or "", label_value, variables)
        for metric, braces in SELECTOR.findall(expr)
    )


def variable_takes(variable: dict[str, Any], label_value: str, variables: dict[str, Any]) -> bool:
    """Can this template variable take `label_value`?"""
    query = variable.get("query")
    query = str(query.get("query") if isinstance(query, dict) else query or "").strip()
    if variable.get("type") == "custom":
        values = [v.strip() for v in query.split(",")]
        return label_value in values or any(
            o.get("value") == label_value for o in variable.get("options") or []
        )
    if variable.get("type") != "query":
        return False
    found = LABEL_VALUES.match(query)
    if not found or found.group(2) != "service":
        return False
    source = found.group(1)
    # The values come from a metric this process exports, restricted by its selector, if any.
    if not any(selects(source, family, label_value, {}) for family in HTTP_METRICS):
        return False
    regex = str(variable.get("regex") or "")
    if regex:  # Grafana's value filter, written /.../
        return re.search(regex.strip("/"), label_value) is not None
    return True


def dashboard_problems(
    deploy: Deploy, label_value: str, families: tuple[str, ...], why: str
) -> Iterator[str]:
    where = f"deploy/grafana/dashboards/{DASHBOARD.name}"
    variables = {
        str(v.get("name")): v for v in (deploy.dashboard.get("templating") or {}).get("list", [])
    }
    all_queries = list(queries(deploy.dashboard))
    for family in families:
        if not any(selects(expr, family, label_value, variables) for _, expr in all_queries):
            yield (
                f"{where}: no panel query selects {family} for service={label_value!r} ({why};"
                f" the `service` variable must be able to take {label_value!r})"
            )


def label_problems(svc: str) -> Iterator[str]:
    """The process labels its metrics with its settings' service_name: it must be the name."""
    try:
        settings = importlib.import_module(f"{svc}.config").Settings
        name = settings.model_fields["service_name"].default
    except (ImportError, AttributeError, KeyError) as exc:
        yield f"{svc}.config.Settings.service_name could not be read ({exc!r})"
        return
    if name != svc:
        yield (
            f"{svc}.config.Settings.service_name is {name!r}: its metrics are labelled"
            f" service={name!r}, which the dashboard and alerts do not know as {svc!r}"
        )


# ------------------------------------------------------------------ the tests


def test_services_are_discovered() -> None:
    assert SERVICES, "no services/<svc>/pyproject.toml: the per-service checks below ran on nothing"


@pytest.mark.parametrize("svc", SERVICES)
def test_service_has_its_deploy_entries(deploy: Deploy, svc: str) -> None:
    port = deploy.ports.get(svc)
    assert port is not None, (
        f"services/{svc} has no port: add it to PORTS in scripts/krika_dev/plan.py"
    )
    has_worker = (ROOT / "services" / svc / "src" / svc / "worker.py").is_file()
    # krika_common's outbox is a table of the service's PostgreSQL database (its first
    # migration); a MongoDB service relays its events its own way, with metrics of its own.
    has_outbox = has_worker and (ROOT / "services" / svc / "alembic.ini").is_file()

    problems = [*stack_problems(deploy, svc, port), *label_problems(svc)]
    problems += scrape_problem(deploy, svc, port, "its port in scripts/krika_dev/plan.py PORTS")
    problems += dashboard_problems(deploy, svc, HTTP_METRICS, "its HTTP metrics")
    if has_worker:
        worker_port = port + deploy.worker_offset
        problems += scrape_problem(
            deploy, f"{svc}-worker", worker_port, f"{port} + {deploy.worker_offset}"
        )
        problems += dashboard_problems(deploy, f"{svc}-worker", HTTP_METRICS, "its worker")
    if has_outbox:
        problems += dashboard_problems(deploy, svc, OUTBOX_METRICS, "its worker's outbox relay")
    assert not problems, f"services/{svc}: missing from the deploy files:\n  " + "\n  ".join(
        problems
    )


def test_gateway_has_its_deploy_entries(deploy: Deploy) -> None:
    problems = list(label_problems("gateway"))
    entry = deploy.stack.get("gateway")
    if entry is None:
        problems.append("docker-stack.yml: no `gateway` service (running `python -m gateway`)")
    else:
        if not runs_module(command_of(entry), "gateway"):
            problems.append("docker-stack.yml: `gateway` does not run `python -m gateway`")
        ops = environment_of(entry).get("GATEWAY_OPS_PORT")
        if ops is not None and ops != str(deploy.gateway_ops_port):
            problems.append(
                f"docker-stack.yml: `gateway` has GATEWAY_OPS_PORT={ops},"
                f" not {deploy.gateway_ops_port} (scripts/krika_dev/plan.py GATEWAY_OPS_PORT)"
            )
    problems += scrape_problem(
        deploy, "gateway", deploy.gateway_ops_port, "its operations port, GATEWAY_OPS_PORT"
    )
    problems += dashboard_problems(deploy, "gateway", HTTP_METRICS, "its HTTP metrics")
    own_panels = ('service="gateway"' in e.replace(" ", "") for _, e in queries(deploy.dashboard))
    if not any(own_panels):
        problems.append(
            f"deploy/grafana/dashboards/{DASHBOARD.name}: no gateway panels (a query selecting"
            ' service="gateway": rate limits, upstream errors)'
        )
    assert not problems, "gateway: missing from the deploy files:\n  " + "\n  ".join(problems)


def datasource_uids(item: Any) -> Iterator[str]:
    """Every datasource uid a dashboard (panel, target, variable...) names."""
    if isinstance(item, dict):
        source = item.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield str(source["uid"])
        elif isinstance(source, str):  # the old by-name form: not a fixed uid
            yield source
        for value in item.values():
            yield from datasource_uids(value)
    elif isinstance(item, list):
        for value in item:
            yield from datasource_uids(value)


def test_dashboards_are_provisioned(deploy: Deploy) -> None:
    stack = yaml.safe_load(STACK.read_text())
    grafana = deploy.stack.get("grafana") or {}
    mounted = {
        str(c.get("target")): (stack.get("configs") or {}).get(str(c.get("source"))) or {}
        for c in grafana.get("configs") or []
        if isinstance(c, dict)
    }
    (uid,) = {str(d["uid"]) for d in yaml.safe_load(DATASOURCE.read_text())["datasources"]}
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards under {DASHBOARDS.relative_to(ROOT)}"
    problems = []
    for path in files:
        where = f"{path.relative_to(ROOT)}"
        config = mounted.get(f"/etc/grafana/dashboards/{path.name}")
        if config is None:
            problems.append(
                f"docker-stack.yml: grafana does not mount {where} at"
                f" /etc/grafana/dashboards/{path.name}"
            )
        elif Path(str(config.get("file"))) != Path(f"./{where}"):
            problems.append(f"docker-stack.yml: /etc/grafana/dashboards/{path.name} is not {where}")
        dashboard = json.loads(path.read_text())
        others = sorted(set(datasource_uids(dashboard)) - {uid})
        if others:
            problems.append(f"{where}: datasources {others}, not only the provisioned {uid!r}")
    assert not problems, "dashboards:\n  " + "\n  ".join(problems)


# ------------------------------------------------------------------ secrets and databases

# A stand-in for the Docker CLI: `docker secret inspect NAME` succeeds when $FAKE_SECRETS/NAME
# exists, `docker secret create NAME -` stores stdin there.
FAKE_DOCKER = """#!/bin/sh
case "$1 $2" in
  "secret inspect") [ -f "$FAKE_SECRETS/$3" ] ;;
  "secret create") cat > "$FAKE_SECRETS/$3" ;;
  *) echo "fake docker: unexpected $*" >&2; exit 2 ;;
esac
"""


def test_create_secrets_makes_every_secret_the_stack_declares(tmp_path: Path) -> None:
    declared = {
        str(secret.get("name") or name)
        for name, secret in (yaml.safe_load(STACK.read_text()).get("secrets") or {}).items()
        if (secret or {}).get("external")
    }
    bin_dir, made = tmp_path / "bin", tmp_path / "secrets"
    bin_dir.mkdir()
    made.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    # What the script asks the operator for, rather than generating.
    given = {
        "STORAGE_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "STORAGE_SECRET_ACCESS_KEY": "example-secret",
        "PAYSTACK_SECRET_KEY": "sk_test_example",
        "NOTIFY_SMTP_PASSWORD": "example-smtp-password",
        "GRAFANA_ADMIN_PASSWORD": "example-grafana",
    }
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SECRETS": str(made)}
    run = subprocess.run(  # noqa: S603 - the repository's own script
        ["bash", str(CREATE_SECRETS)],  # noqa: S607
        env=env | given,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    created = {path.name for path in made.iterdir()}
    missing = sorted(declared - created)
    assert not missing, f"{CREATE_SECRETS.name} does not create {missing}:\n{run.stdout}"
    # A second run keeps every secret.
    again = subprocess.run(  # noqa: S603
        ["bash", str(CREATE_SECRETS)],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "created" not in again.stdout, again.stdout


def test_every_postgres_service_has_its_database() -> None:
    created = set(re.findall(r"CREATE DATABASE\s+\"?(\w+)", INIT_DATABASES.read_text(), re.I))
    wanted = {
        f"krika_{svc}" for svc in SERVICES if (ROOT / "services" / svc / "alembic.ini").exists()
    }
    missing = sorted(wanted - created)
    assert not missing, f"{INIT_DATABASES.relative_to(ROOT)} does not create {missing}"


def test_identity_and_notify_share_the_link_key(deploy: Deploy) -> None:
    """identity seals one-time tokens with the public half of the key notify opens them with:
    both must read the same secret, else no link in a verification or reset mail works."""
    if "notify" not in SERVICES:
        pytest.skip("no services/notify yet")
    sources: dict[str, set[str]] = {}
    for name, entry in deploy.stack.items():
        for variable in ("IDENTITY_LINK_KEY_FILE", "NOTIFY_LINK_KEY_FILE"):
            value = environment_of(entry).get(variable)
            if value is not None:
                found = re.fullmatch(r"/run/secrets/([\w.-]+)", value.strip())
                sources.setdefault(name, set()).add(found.group(1) if found else value)
    assert {"identity", "notify", "notify-worker"} <= set(sources), sources
    assert len(set().union(*sources.values())) == 1, sources
