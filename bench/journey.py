"""Marketplace journey benchmark: many orders at once, through the gateway, on every process.

    uv run --no-sync python bench/journey.py                      # 32 journeys in flight, 60 s
    uv run --no-sync python bench/journey.py --concurrency 16 --duration 30
    uv run --no-sync python bench/journey.py --concurrency 8 16 32 64 --duration 30

Starts the whole system the way the system test does (tests/system.py: the launcher's plan,
every service, worker, the Paystack sandbox and the gateway as separate processes, with
databases, an exchange and a Redis index of their own, production timings), so the ports of
`make up` must be free. It seeds an admin, `--providers` verified providers (KYC approved, a
payout account, one published service each) and `--customers` customers, then keeps
`--concurrency` journeys in flight for `--duration` seconds, each one:

    place (POST /orders) -> checkout (POST /payments/checkout, again while 409 order_not_ready)
    -> pay (the sandbox's checkout page: GET it, POST its form, as a browser) -> webhook
    (sandbox -> gateway -> payments, verified) -> paid (polled: GET /orders/{id})
    -> start -> deliver -> complete -> credited (ledger books the provider's earning)

All calls but the checkout page go through the gateway. The figures:

- complete orders/s: orders credited to their provider within the measured window, per second;
- webhook -> credit: from the moment the checkout form's POST returned (the sandbox has recorded
  the charge and queues its webhook) to the `created_at` of the provider's `earning` in
  `GET /wallet/transactions` (ledger's clock; same machine), p50/p95/p99/max. It includes the
  client's own steps (seeing `paid` by polling every `--poll` s, start, deliver, complete);
- errors: any answer other than the expected ones, and any journey not credited in the end;
- each process's CPU over the window (as a share of one core, and of the machine's two) and its
  RSS (the largest of samples every 0.5 s), the backing servers' too (all `postgres`, `beam.smp`,
  `redis-server` processes: other users' work included), this load generator's, and the
  machine's busy time (/proc/stat). The process with the most CPU is named as the bottleneck
  when the machine is saturated.

At the end the ledger's invariants must hold. Prints a table and writes the figures as JSON to
bench/results/ (git-ignored). Rate limits: every request comes from 127.0.0.1, whose 1,200 a
minute per route group (and 30 sign-ins) the gateway would refuse; they are raised, not off
(the counters still run).
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
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from marketplace import (  # noqa: E402
    User,
    log_in,
    new_category,
    publish_service,
    sign_up,
    verified_provider,
)
from procstat import (  # noqa: E402
    machine_busy,
    percentile,
    pids_named,
    process_cpu,
    process_peak_rss,
    process_rss,
    stamp,
)
from system import API, System  # noqa: E402
from yarl import URL  # noqa: E402

PG_SERVER = os.environ.get("KRIKA_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("KRIKA_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("KRIKA_BENCH_REDIS", "redis://127.0.0.1:6379/12")
LIMIT = {"per_user": 10_000_000, "per_ip": 10_000_000, "window": 60}
SETTINGS = {
    "GATEWAY_RATE_LIMIT_DEFAULT": json.dumps(LIMIT),
    "GATEWAY_RATE_LIMITS": json.dumps({"auth": LIMIT}),
}
PRICES = (1_500_000, 2_500_050, 4_999_999, 7_000_000)


# ---------------------------------------------------------------------------------- /proc


class Meter:
    """CPU and RSS of each named group of processes over a window. Processes come and go (a
    PostgreSQL backend per connection): each one's CPU is sampled every half second and counted
    from its first sample in the window (a process that ended between two samples loses at most
    half a second of its CPU)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.base: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.last: dict[str, dict[int, float]] = {name: {} for name in groups}
        self.rss: dict[str, int] = {name: 0 for name in groups}
        self.peak: dict[str, int] = {name: 0 for name in groups}
        self.machine0 = self.machine1 = (0.0, 0.0)
        self.started = self.ended = 0.0
        self._sampler: asyncio.Task[None] | None = None

    def _sample_once(self, first: bool = False) -> None:
        for name, pids in self.groups.items():
            rss = 0
            for pid in pids():
                cpu = process_cpu(pid)
                if first:
                    self.base[name][pid] = cpu
                else:
                    self.base[name].setdefault(pid, 0.0)
                self.last[name][pid] = cpu
                rss += process_rss(pid)
            self.rss[name] = max(self.rss[name], rss)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._sample_once()

    def start(self) -> None:
        self._sample_once(first=True)
        self.machine0, self.started = machine_busy(), time.monotonic()
        self._sampler = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        self._sample_once()
        for name, pids in self.groups.items():
            self.peak[name] = sum(process_peak_rss(pid) for pid in pids())
        self.machine1, self.ended = machine_busy(), time.monotonic()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def cpu(self, name: str) -> float:
        return sum(cpu - self.base[name][pid] for pid, cpu in self.last[name].items())

    def figures(self) -> dict[str, Any]:
        wall = self.ended - self.started
        busy = self.machine1[0] - self.machine0[0]
        total = self.machine1[1] - self.machine0[1]
        processes = {
            name: {
                "cpu_s": round(self.cpu(name), 2),
                "core_share": round(self.cpu(name) / wall, 3),
                "rss_mb": round(self.rss[name] / 2**20, 1),
                "rss_peak_since_start_mb": round(self.peak[name] / 2**20, 1),
            }
            for name in self.groups
        }
        return {
            "wall_s": round(wall, 2),
            "cores": os.cpu_count() or 1,
            "machine_busy_share": round(busy / total, 3) if total else 0.0,
            "machine_busy_cpu_s": round(busy, 2),
            "processes": processes,
        }


# ---------------------------------------------------------------------------------- journeys


@dataclass
class Shop:
    provider: User
    service_id: str
    package_id: str
    price: int


@dataclass
class Journey:
    order_id: str
    shop: Shop
    placed: float  # time.time()
    webhook: float = 0.0  # the checkout form's POST returned
    paid_seen: float = 0.0
    paid_at: float = 0.0  # orders' clock: it applied payments.payment_succeeded (history)
    completed: float = 0.0
    completed_at: float = 0.0  # orders' clock: the customer's complete
    credited: float = 0.0  # ledger's clock: the provider's earning


@dataclass
class Load:
    """The load generator: aiohttp on the gateway, the figures it keeps."""

    session: aiohttp.ClientSession
    poll: float
    requests: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    done: list[Journey] = field(default_factory=list)

    async def call(
        self, method: str, path: str, user: User, expect: tuple[int, ...], **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = user.headers | kwargs.pop("headers", {})
        self.requests += 1
        route = re.sub(r"[0-9a-f-]{36}", "{id}", path)
        self.routes[f"{method} {route}"] += 1
        async with self.session.request(
            method, f"{API}{path}", headers=headers, **kwargs
        ) as answer:
            body = await answer.json(content_type=None) if answer.content_length != 0 else {}
            if answer.status not in expect:
                error = body.get("error") if isinstance(body, dict) else None
                self.errors[
                    f"{method} {re.sub(r'[0-9a-f-]{36}', '{id}', path)} {answer.status} {error}"
                ] += 1
                raise JourneyFailed(f"{method} {path}: {answer.status} {body}")
            return answer.status, body if isinstance(body, dict) else {}

    async def pay(self, authorization_url: str) -> None:
        """The checkout page as a browser uses it: GET it, POST its form with Pay."""
        self.requests += 2
        self.routes["sandbox checkout page (GET, POST)"] += 1
        async with self.session.get(authorization_url) as page:
            text = await page.text()
        action = re.search(r'<form[^>]*action="([^"]+)"', text)
        if page.status != 200 or action is None:
            self.errors[f"checkout page {page.status}"] += 1
            raise JourneyFailed(f"checkout page {page.status}")
        target = str(page.url.join(URL(action.group(1))))
        async with self.session.post(target, data={"outcome": "success"}) as paid:
            await paid.read()
            if paid.status not in (200, 303):
                self.errors[f"checkout form {paid.status}"] += 1
                raise JourneyFailed(f"checkout form {paid.status}")

    async def journey(self, customer: User, shop: Shop) -> None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body = {"service_id": shop.service_id, "package_id": shop.package_id}
        _, order = await self.call("POST", "/orders", customer, (201,), json=body, headers=key)
        journey = Journey(order["id"], shop, placed=time.time())
        key = {"Idempotency-Key": uuid.uuid4().hex}
        while True:
            status, checkout = await self.call(
                "POST",
                "/payments/checkout",
                customer,
                (201, 409),
                json={"order_id": journey.order_id},
                headers=key,
            )
            if status == 201:
                break
            if checkout.get("error") != "order_not_ready":
                self.errors[f"checkout 409 {checkout.get('error')}"] += 1
                raise JourneyFailed(str(checkout))
            await asyncio.sleep(self.poll)
        await self.pay(checkout["authorization_url"])
        journey.webhook = time.time()
        provider = shop.provider
        path = f"/orders/{journey.order_id}"
        while (await self.call("GET", path, provider, (200,)))[1]["status"] != "paid":  # noqa: ASYNC110 - another process's state: polled, as a frontend does
            await asyncio.sleep(self.poll)
        journey.paid_seen = time.time()
        await self.call("POST", f"{path}/start", provider, (200,))
        delivery = {"message": "Done", "attachment_ids": []}
        await self.call("POST", f"{path}/deliver", provider, (200,), json=delivery)
        _, done = await self.call("POST", f"{path}/complete", customer, (200,))
        journey.completed = time.time()
        journey.completed_at = stamp(done["completed_at"])
        self.done.append(journey)


class JourneyFailed(Exception):
    pass


async def keep_going(
    load: Load, customers: list[User], shops: list[Shop], concurrency: int, until: float
) -> None:
    """`concurrency` journeys in flight until `until` (monotonic); each worker its customer."""
    counter = iter(range(10**9))

    async def worker(k: int) -> None:
        while time.monotonic() < until:
            n = next(counter)
            customer = customers[(k + n) % len(customers)]
            try:
                await load.journey(customer, shops[n % len(shops)])
            except JourneyFailed:
                await asyncio.sleep(0.1)
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.errors[f"client {type(exc).__name__}"] += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


async def credits(api: httpx.AsyncClient, shops: list[Shop]) -> dict[str, float]:
    """order id -> time ledger credited its provider (the earning's created_at)."""
    found: dict[str, float] = {}
    for shop in {s.provider.id: s for s in shops}.values():
        cursor: str | None = None
        while True:
            params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
            page = (
                await api.get("/wallet/transactions", params=params, headers=shop.provider.headers)
            ).json()
            for item in page["items"]:
                if item["kind"] == "earning":
                    found[item["order_id"]] = stamp(item["created_at"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return found


async def paid_times(api: httpx.AsyncClient, journeys: list[Journey]) -> None:
    """When orders applied each payment: its history's pending -> paid line (after the run)."""
    gate = asyncio.Semaphore(8)

    async def one(journey: Journey) -> None:
        async with gate:
            answer = await api.get(
                f"/orders/{journey.order_id}/history", headers=journey.shop.provider.headers
            )
        for line in answer.json()["items"]:
            if line["kind"] == "transition" and line["to_status"] == "paid":
                journey.paid_at = stamp(line["at"])

    await asyncio.gather(*(one(j) for j in journeys))


async def seed(
    api: httpx.AsyncClient, system: System, providers: int, customers: int
) -> tuple[User, list[Shop], list[User]]:
    admin = await sign_up(api, "customer", "Root")
    await system.grant_admin(admin.email)
    admin.headers = await log_in(api, admin.email)
    category = await new_category(api, admin)
    gate = asyncio.Semaphore(4)  # identity hashes three passwords at a time by default

    async def shop(k: int) -> Shop:
        async with gate:
            provider = await verified_provider(api, admin, f"Provider {k}")
        price = PRICES[k % len(PRICES)]
        service = await publish_service(
            api, provider, category, title=f"Logo studio {k}", prices=(price,), within=60
        )
        package = service["packages"][0]
        return Shop(provider, service["id"], package["id"], package["price"])

    async def customer(k: int) -> User:
        async with gate:
            return await sign_up(api, "customer", f"Customer {k}")

    shops = await asyncio.gather(*(shop(k) for k in range(providers)))
    people = await asyncio.gather(*(customer(k) for k in range(customers)))
    return admin, list(shops), list(people)


async def run_level(
    system: System,
    api: httpx.AsyncClient,
    shops: list[Shop],
    customers: list[User],
    concurrency: int,
    duration: float,
    poll: float,
) -> dict[str, Any]:
    def own(name: str) -> Callable[[], list[int]]:
        return lambda: [system.pid(name)]

    groups = {name: own(name) for name in system.running}
    ours = f"krika_sys_{system.run_id}_"
    groups |= {
        "postgres (our databases)": lambda: pids_named("postgres", cmdline=ours),
        "postgres (server, others)": lambda: pids_named("postgres", exclude=ours),
        "rabbitmq (beam.smp)": lambda: pids_named("beam.smp"),
        "redis-server": lambda: pids_named("redis-server"),
        "load generator": lambda: [os.getpid()],
    }
    meter = Meter(groups)
    connector = aiohttp.TCPConnector(limit=concurrency * 2, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        load = Load(session, poll)
        # Warm-up (not measured): a journey per shop, so every service knows every other.
        await keep_going(load, customers, shops, min(concurrency, len(shops)), time.monotonic() + 5)
        load.done.clear()
        load.errors.clear()
        load.routes.clear()
        load.requests = 0
        meter.start()
        started = time.time()
        await keep_going(load, customers, shops, concurrency, time.monotonic() + duration)
        ended = time.time()
        await meter.stop()
    credited: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        credited = await credits(api, shops)
        if all(j.order_id in credited for j in load.done):
            break
        await asyncio.sleep(0.5)
    for journey in load.done:
        journey.credited = credited.get(journey.order_id, 0.0)
    await paid_times(api, load.done)
    uncredited = [j for j in load.done if not j.credited]
    in_window = [j for j in load.done if j.credited and started <= j.credited <= ended]
    latencies = [(j.credited - j.webhook) * 1000 for j in load.done if j.credited]
    through = [(j.credited - j.placed) * 1000 for j in load.done if j.credited]
    to_paid = [(j.paid_at - j.webhook) * 1000 for j in load.done]
    to_credit = [(j.credited - j.completed_at) * 1000 for j in load.done if j.credited]
    system_only = [
        ((j.paid_at - j.webhook) + (j.credited - j.completed_at)) * 1000
        for j in load.done
        if j.credited
    ]
    figures = meter.figures()
    wall = figures["wall_s"]
    processes = figures["processes"]
    heaviest = max(processes, key=lambda n: processes[n]["core_share"])
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "journeys": len(load.done),
        "credited_in_window": len(in_window),
        "orders_per_s": round(len(in_window) / (ended - started), 2),
        "requests_per_s": round(load.requests / wall, 1),
        "errors": dict(load.errors),
        "requests_per_journey": {
            route: round(count / max(1, len(load.done)), 2) for route, count in load.routes.items()
        },
        "uncredited": len(uncredited),
        "webhook_to_credit_ms": summary(latencies),
        "webhook_to_paid_ms": summary(to_paid),
        "complete_to_credit_ms": summary(to_credit),
        "webhook_to_credit_without_client_ms": summary(system_only),
        "place_to_credit_ms": summary(through),
        "machine_busy_share": figures["machine_busy_share"],
        "wall_s": figures["wall_s"],
        "cores": figures["cores"],
        "processes": processes,
        "heaviest": heaviest,
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def report(level: dict[str, Any]) -> None:
    lat = level["webhook_to_credit_ms"]
    print(
        f"\n=== {level['concurrency']} journeys in flight, {level['duration_s']:.0f} s: "
        f"{level['orders_per_s']} complete orders/s ({level['credited_in_window']} credited in "
        f"the window, {level['journeys']} journeys), {level['requests_per_s']} client req/s"
    )
    print(
        f"webhook -> credit ms: p50 {lat.get('p50')}  p95 {lat.get('p95')}  p99 {lat.get('p99')}"
        f"  max {lat.get('max')}"
    )
    for label, key in (
        ("  without the client's steps", "webhook_to_credit_without_client_ms"),
        ("  webhook -> order paid", "webhook_to_paid_ms"),
        ("  complete -> credit", "complete_to_credit_ms"),
        ("  place -> credit", "place_to_credit_ms"),
    ):
        part = level[key]
        print(f"{label}: p50 {part.get('p50')}  p95 {part.get('p95')}  p99 {part.get('p99')}")
    print(f"errors: {level['errors'] or 'none'}; not credited: {level['uncredited']}")
    routes = ", ".join(f"{r} {n}" for r, n in level["requests_per_journey"].items())
    print(f"requests per journey: {routes}")
    ours = sum(p["cpu_s"] for p in level["processes"].values())
    print(
        f"machine busy: {level['machine_busy_share'] * 100:.0f} % of {level['cores']} cores "
        f"(the processes below: {ours / level['wall_s']:.2f} cores, "
        f"{ours / max(1, level['journeys']) * 1000:.0f} ms of CPU per journey); "
        f"heaviest: {level['heaviest']}"
    )
    print(f"  {'process':<26}{'CPU s':>8}{'% of a core':>13}{'RSS MB':>9}{'peak ever':>11}")
    ordered = sorted(level["processes"].items(), key=lambda kv: -kv[1]["core_share"])
    for name, p in ordered:
        print(
            f"  {name:<26}{p['cpu_s']:>8.1f}{p['core_share'] * 100:>12.0f}%{p['rss_mb']:>9.1f}"
            f"{p['rss_peak_since_start_mb']:>11.1f}"
        )


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="krika-bench-journey-") as folder:
        system = System(
            run_id=f"bench_{uuid.uuid4().hex[:6]}",
            folder=Path(folder),
            postgres_url=PG_SERVER,
            amqp_url=AMQP_URL,
            redis_url=REDIS_URL,
            settings=SETTINGS,
        )
        print("starting every process (tests/system.py)...", flush=True)
        await system.start()
        try:
            async with httpx.AsyncClient(base_url=API, timeout=60, trust_env=False) as api:
                t = time.monotonic()
                admin, shops, customers = await seed(api, system, args.providers, args.customers)
                print(
                    f"seeded {len(shops)} providers and {len(customers)} customers in "
                    f"{time.monotonic() - t:.0f} s",
                    flush=True,
                )
                levels = []
                for concurrency in args.concurrency:
                    level = await run_level(
                        system, api, shops, customers, concurrency, args.duration, args.poll
                    )
                    report(level)
                    levels.append(level)
                checked = (await api.get("/ledger/invariants", headers=admin.headers)).json()
                print(f"\nledger invariants: {'ok' if checked['ok'] else checked}")
            dead = system.dead()
            if dead:
                print(f"processes that died: {dead}")
        finally:
            await system.stop()
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"journey-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "at": stamp,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "args": vars(args),
                "levels": levels,
                "invariants_ok": checked["ok"],
            },
            indent=2,
        )
    )
    print(f"figures: {out.relative_to(ROOT)}")
    if not checked["ok"] or dead or any(lvl["uncredited"] for lvl in levels):
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--providers", type=int, default=16)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
