"""Gateway benchmark: one small upstream endpoint, called directly, through nginx, through us.

    uv run --no-sync python bench/gateway.py [--duration 10] [--connections 32]

Starts, on free loopback ports:
- an upstream: FastAPI under uvicorn (uvloop, httptools), `GET /orders/echo` answering a small
  JSON document, and serving the JWKS of a key generated for this run;
- nginx as a plain reverse proxy in front of it (one worker, keepalive upstream pool), when
  an `nginx` binary is installed - otherwise that leg is skipped with a message;
- the gateway (`python -m gateway`, one process, as in production: Krika's HTTP limits on,
  JWT verification, Redis rate limits on with limits too high to trigger, access marks read,
  JSON logs at INFO to /dev/null), twice: as configured by default (`gateway`), and without
  the access line per request (`gateway-nolog`).

Each leg is measured at 1 connection (latency) and at N connections (throughput) with wrk
when installed, else with the asyncio load generator below run in its own process. Prints
one table and writes the figures as JSON to bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ECHO_PATH = "/orders/echo"


# --------------------------------------------------------------------------- upstream


def run_upstream(port: int, jwks_file: Path) -> None:
    """The upstream service: a JSON echo on a private route, plus the JWKS."""
    import uvicorn

    jwks = json.loads(jwks_file.read_text())
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def keys() -> dict[str, Any]:
        return dict(jwks)

    @app.get(ECHO_PATH)
    async def echo(request: Request) -> dict[str, Any]:
        return {"ok": True, "user": request.headers.get("x-user-id")}

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


# --------------------------------------------------------------------------- load generator


@dataclass
class Result:
    leg: str
    connections: int
    requests: int
    errors: int
    rps: float
    median_ms: float
    p99_ms: float
    tool: str


async def _client(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float]
) -> int:
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        while clock() < stop_at:
            start = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if match is None:
                raise RuntimeError("the benchmark endpoint must answer with a Content-Length")
            await reader.readexactly(int(match.group(1)))
            latencies.append(clock() - start)
            if status != 200:
                errors += 1
    finally:
        writer.close()
    return errors


async def _load(url: str, headers: dict[str, str], connections: int, duration: float) -> Any:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(_client(host, port, request, started + duration, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": sum(errors),
        "rps": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def run_load(url: str, headers: dict[str, str], connections: int, duration: float) -> None:
    """Entry point of the load-generator process: prints its figures as JSON."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(_load(url, headers, connections, duration))))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no {label} latency:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def measure(
    leg: str, url: str, headers: dict[str, str], connections: int, duration: float
) -> Result:
    wrk = shutil.which("wrk")
    if wrk:
        args = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        errors = int(non_2xx.group(1)) if non_2xx else 0
        if socket_errors:
            errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
        return Result(
            leg=leg,
            connections=connections,
            requests=requests,
            errors=errors,
            rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            median_ms=_wrk_ms(out, "50%"),
            p99_ms=_wrk_ms(out, "99%"),
            tool="wrk",
        )
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "load",
            "--url",
            url,
            "--headers",
            json.dumps(headers),
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(out)
    return Result(leg=leg, connections=connections, tool="python-asyncio", **figures)


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=2, trust_env=False)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up: {last}")


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


Runs = dict[tuple[str, int], list[Result]]


def bench(duration: float, connections: int, repeat: int, redis_url: str) -> Runs:
    from joserfc import jwt
    from joserfc.jwk import KeySet, RSAKey

    key = RSAKey.generate_key(2048, auto_kid=True)
    now = int(time.time())
    token = jwt.encode(
        {"alg": "RS256", "kid": key.kid},
        {
            "sub": str(uuid.uuid4()),
            "roles": ["customer"],
            "iss": "krika-identity",
            "aud": "krika",
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithms=["RS256"],
    )
    auth = {"Authorization": f"Bearer {token}"}
    runs: Runs = {}
    with tempfile.TemporaryDirectory() as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        jwks_file = tmp / "jwks.json"
        jwks_file.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}"
        stack.enter_context(
            process(
                [
                    sys.executable,
                    __file__,
                    "upstream",
                    "--port",
                    str(up_port),
                    "--jwks",
                    str(jwks_file),
                ]
            )
        )
        legs: list[tuple[str, str, dict[str, str]]] = [("direct", f"{upstream}{ECHO_PATH}", {})]

        nginx = shutil.which("nginx")
        if nginx:
            nginx_port = free_port()
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (tmp / sub).mkdir()
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=up_port, port=nginx_port))
            stack.enter_context(process([nginx, "-p", str(tmp), "-c", str(conf)]))
            legs.append(("nginx", f"http://127.0.0.1:{nginx_port}{ECHO_PATH}", {}))
        else:
            print("nginx not installed: skipping the nginx leg", file=sys.stderr)

        for name, access_log in (("gateway", True), ("gateway-nolog", False)):
            port = free_port()
            env = {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(port),
                "GATEWAY_OPS_PORT": str(free_port()),
                "GATEWAY_ORDERS_URL": upstream,
                "GATEWAY_JWKS_URL": f"{upstream}/.well-known/jwks.json",
                "GATEWAY_REDIS_URL": redis_url,
                # On, but too high to trigger.
                "GATEWAY_RATE_LIMIT_DEFAULT": json.dumps(
                    {"per_user": 10**9, "per_ip": 10**9, "window": 60}
                ),
                "GATEWAY_CONSUME_EVENTS": "false",
                # As in production: JSON logs at INFO (to /dev/null here), and the access
                # line per request unless this leg measures the gateway without it.
                "GATEWAY_LOG_LEVEL": "INFO",
                "GATEWAY_ACCESS_LOG": str(access_log).lower(),
            }
            stack.enter_context(process([sys.executable, "-m", "gateway"], env))
            legs.append((name, f"http://127.0.0.1:{port}/api/v1{ECHO_PATH}", auth))

        for _, url, headers in legs:
            wait_until_up(url, headers)
        # Interleaved repeats, so a noisy neighbour hurts every leg rather than one.
        for attempt in range(repeat):
            for leg, url, headers in legs:
                for conns in (1, connections):
                    if attempt == 0:
                        measure(leg, url, headers, conns, min(2.0, duration))  # warm-up
                    result = measure(leg, url, headers, conns, duration)
                    print(
                        f"  [{attempt + 1}/{repeat}] {leg:13} c={conns:<3} {result.rps:9.0f} req/s"
                        f"  median {result.median_ms:6.3f} ms  p99 {result.p99_ms:7.3f} ms"
                        f"  errors {result.errors}",
                        file=sys.stderr,
                    )
                    runs.setdefault((leg, conns), []).append(result)
    return runs


def _median_run(results: list[Result]) -> Result:
    """Median of each figure over the repeats."""
    first = results[0]
    return Result(
        leg=first.leg,
        connections=first.connections,
        requests=int(statistics.median(r.requests for r in results)),
        errors=sum(r.errors for r in results),
        rps=statistics.median(r.rps for r in results),
        median_ms=statistics.median(r.median_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        tool=first.tool,
    )


def table(runs: Runs, connections: int) -> str:
    """The median of each figure, then the comparisons: each is computed within a round (the
    legs of one round ran back to back) and the median over rounds is kept, so a machine whose
    speed drifts between rounds does not skew a ratio."""
    results = [_median_run(r) for r in runs.values()]
    lines = [
        "| leg | conns | req/s | median ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(results, key=lambda r: (r.connections, _LEG_ORDER.index(r.leg))):
        lines.append(
            f"| {r.leg} | {r.connections} | {r.rps:.0f} | {r.median_ms:.3f} | "
            f"{r.p99_ms:.3f} | {r.errors} |"
        )
    lines.append("")
    nginx_t, direct_1 = runs.get(("nginx", connections)), runs.get(("direct", 1))
    for leg in ("gateway", "gateway-nolog"):
        busy, single = runs.get((leg, connections)), runs.get((leg, 1))
        if busy and nginx_t:
            ratios = [b.rps / n.rps for b, n in zip(busy, nginx_t, strict=True)]
            lines.append(
                f"{leg}: throughput {statistics.median(ratios):.0%} of nginx's at "
                f"{connections} connections (per round: "
                f"{', '.join(f'{r:.0%}' for r in ratios)}; target >= 60%)"
            )
        if single and direct_1:
            added = [s.median_ms - d.median_ms for s, d in zip(single, direct_1, strict=True)]
            lines.append(
                f"{leg}: adds {statistics.median(added):.3f} ms to the median at 1 connection "
                "(target <= 0.5 ms)"
            )
    return "\n".join(lines)


_LEG_ORDER = ["direct", "nginx", "gateway", "gateway-nolog"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--jwks", type=Path, required=True)
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--headers", default="{}")
    load.add_argument("--connections", type=int, default=1)
    load.add_argument("--duration", type=float, default=10)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32, help="for the throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    if args.command == "upstream":
        run_upstream(args.port, args.jwks)
        return
    if args.command == "load":
        run_load(args.url, json.loads(args.headers), args.connections, args.duration)
        return
    tool = "wrk" if shutil.which("wrk") else "python-asyncio load generator (separate process)"
    print(f"load generator: {tool}; {machine()}", file=sys.stderr)
    runs = bench(args.duration, args.connections, args.repeat, args.redis_url)
    print(table(runs, args.connections))
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"gateway-{stamp}.json").write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": machine(),
                "runs": {f"{leg} c={c}": [asdict(r) for r in rs] for (leg, c), rs in runs.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
