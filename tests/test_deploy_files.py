"""The deploy files keep up with the services: every service under services/, and the gateway,
has its entries in docker-stack.yml, a Prometheus scrape job and panels on the Grafana dashboard.

Pure file checks, no servers. Services are found the way the launcher finds them: a folder
services/<svc> with a pyproject.toml is a service, an alembic.ini gives it migrations and
src/<svc>/worker.py a worker. Ports come from scripts/krika_dev/plan.py (PORTS, WORKER_PORT_OFFSET,
GATEWAY_OPS_PORT), read from its source.

For each service:

- docker-stack.yml: a `<svc>` service running `python -m <svc>`; with migrations, a
  `<svc>-migrate` one-off job (restart_policy condition `none`) running
  `alembic -c services/<svc>/alembic.ini upgrade ...`; with a worker, a `<svc>-worker` running
  `python -m <svc>.worker`. A `<SVC>_PORT` / `<SVC>_WORKER_PORT` set there must be the port that
  Prometheus scrapes.
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
  rate and latency for every process; outbox backlog and lag for a service with a worker), some
  visible panel query selects it once the variables are substituted. A dashboard with one panel
  per service (`service="<svc>"`) passes the same check. The gateway also needs panels of its
  own: queries selecting `service="gateway"`.

Each test lists everything missing for its service, in one message.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, no stubs (uvicorn[standard] brings it)

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "docker-stack.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "krika-services.json"
DEV = ROOT / "scripts" / "krika_dev" / "plan.py"

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


@dataclass(frozen=True)
class Deploy:
    stack: dict[str, Any]  # docker-stack.yml's `services`
    scrapes: dict[tuple[str, int], str]  # (host, port) -> Prometheus job name
    dashboard: dict[str, Any]
    ports: dict[str, int]
    worker_offset: int
    gateway_ops_port: int


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

    problems = [*stack_problems(deploy, svc, port), *label_problems(svc)]
    problems += scrape_problem(deploy, svc, port, "its port in scripts/krika_dev/plan.py PORTS")
    problems += dashboard_problems(deploy, svc, HTTP_METRICS, "its HTTP metrics")
    if has_worker:
        worker_port = port + deploy.worker_offset
        problems += scrape_problem(
            deploy, f"{svc}-worker", worker_port, f"{port} + {deploy.worker_offset}"
        )
        problems += dashboard_problems(deploy, f"{svc}-worker", HTTP_METRICS, "its worker")
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
