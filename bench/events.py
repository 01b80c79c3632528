"""Event pipeline benchmark: our path next to raw aio-pika, in one run, on this machine.

    uv run --no-sync python bench/events.py [--events 20000] [--rate 500] [--seconds 20]

Our path: `record_event` in a writer's transactions → `OutboxRelay` → `EventBus` →
`InboxHandlers` (one effect row per event). Raw: aio-pika publisher confirms pipelined → a
consumer that acknowledges. The writer, the relay and the consumer (or the raw publisher and
consumer) each run in their own process, against the local PostgreSQL and RabbitMQ.

- burst: the writer commits `--events` events, `--per-tx` per transaction, as fast as it can;
  the figure is events/s from the writer's start to the last event handled (committed by the
  consumer), end to end;
- steady: the writer commits `--rate` events/s, one per transaction, for `--seconds`; the
  figure is latency from just before the writer's commit to just after the consumer's commit
  (p50/p95/p99/max), plus the CPU the machine spent per event (all processes, the database and
  the broker included: /proc/stat).

Prints a table and writes the figures as JSON to bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PG_SERVER = os.environ.get("KRIKA_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("KRIKA_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE = "krika_bench_events"
EVENT_TYPE = "bench.ping"


def database_url() -> str:
    return f"{PG_SERVER}/{DATABASE}"


def emit(**fields: Any) -> None:
    """One JSON line to the orchestrator."""
    print(json.dumps(fields), flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


async def paced(
    send: Callable[[Sequence[int]], Coroutine[Any, Any, None]],
    total: int,
    per: int,
    rate: float,
    started: float,
) -> None:
    """`send` events 0..total-1 in groups of `per`, starting groups at `rate` events/s
    (without waiting for the previous group), then wait for every group."""
    pending: set[asyncio.Task[None]] = set()
    for k, first in enumerate(range(0, total, per)):
        delay = started + k * per / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(range(first, min(first + per, total))))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


# --------------------------------------------------------------------------- our pipeline


def _models() -> Any:
    from sqlalchemy import BigInteger, Column, Float, Identity, MetaData, Table, Uuid

    from krika_common.events import EventData

    class Ping(EventData):
        event_type = EVENT_TYPE
        event_version = 1

        n: int
        t: float = 0.0  # wall clock just before the writer's commit

    effect = Table(
        "bench_effect",
        MetaData(),
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False),
        Column("t", Float, nullable=False),
    )
    return Ping, effect


async def setup_database() -> None:
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlmodel import SQLModel

    from krika_common.testing.databases import create_database, drop_database

    _, effect = _models()
    await drop_database(PG_SERVER, DATABASE)
    await create_database(PG_SERVER, DATABASE)
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    tables = [SQLModel.metadata.tables[t] for t in ("outbox", "inbox")]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
        await conn.run_sync(effect.metadata.create_all)
    await engine.dispose()


async def writer(mode: str, events: int, per_tx: int, rate: float, seconds: float) -> None:
    from krika_common.db import make_engine, make_sessionmaker
    from krika_common.events import record_event

    ping, _ = _models()
    engine = make_engine(database_url(), pool_size=4)
    sessionmaker = make_sessionmaker(engine)

    async def commit(numbers: Sequence[int]) -> None:
        async with sessionmaker() as session, session.begin():
            t = time.time()
            for n in numbers:
                await record_event(session, ping(n=n, t=t), producer="bench")

    await commit([])  # warm the pool
    started = time.time()
    cpu = cpu_seconds()
    if mode == "burst":
        batches = [range(i, min(i + per_tx, events)) for i in range(0, events, per_tx)]
        queue: asyncio.Queue[range] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def work() -> None:
            while not queue.empty():
                await commit(queue.get_nowait())

        await asyncio.gather(*(work() for _ in range(4)))
        total = events
    else:  # `rate` events/s, in transactions of `per_tx`
        total = int(rate * seconds)
        await paced(commit, total, per_tx, rate, started)
    emit(
        role="writer", started=started, finished=time.time(), events=total, cpu=cpu_seconds() - cpu
    )
    await engine.dispose()


async def relay() -> None:
    from krika_common.db import make_engine, make_sessionmaker
    from krika_common.events import EventBus, OutboxRelay

    engine = make_engine(database_url(), pool_size=2)
    bus = EventBus(AMQP_URL, service="bench-relay", exchange=os.environ["BENCH_EXCHANGE"])
    await bus.connect()
    task = asyncio.create_task(OutboxRelay(make_sessionmaker(engine), bus).run())
    cpu = cpu_seconds()
    emit(role="relay", ready=True)
    await _until_stdin_closes()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    emit(role="relay", cpu=cpu_seconds() - cpu)
    await bus.close()
    await engine.dispose()


async def consumer(expect: int, prefetch: int) -> None:
    from krika_common.db import make_engine, make_sessionmaker
    from krika_common.events import Delivery, EventBus, InboxHandlers

    ping, effect = _models()
    engine = make_engine(database_url(), pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    handlers = InboxHandlers()

    @handlers.on(ping, consumer="bench.effect")
    async def write_effect(session: Any, envelope: Any) -> None:
        await session.exec(effect.insert().values(event_id=envelope.id, t=envelope.data["t"]))

    latencies: list[float] = []
    done = asyncio.Event()
    last = 0.0

    async def measured(deliveries: Sequence[Delivery]) -> list[Exception | None]:
        nonlocal last
        outcomes = await handlers.handle_batch(sessionmaker, deliveries)
        last = time.time()
        latencies.extend(last - d.envelope.data["t"] for d in deliveries)
        if len(latencies) >= expect:
            done.set()
        return outcomes

    bus = EventBus(
        AMQP_URL,
        service="bench-consumer",
        exchange=os.environ["BENCH_EXCHANGE"],
        queue=f"bench.{os.environ['BENCH_EXCHANGE']}",
        queue_expires=300,
        prefetch=prefetch,
    )
    bus.subscribe_batch([EVENT_TYPE], measured, max_batch=prefetch)
    await bus.connect()
    await bus.start()
    cpu = cpu_seconds()
    emit(role="consumer", ready=True)
    await done.wait()
    emit(role="consumer", last=last, latencies=latencies, cpu=cpu_seconds() - cpu)
    await bus.close()
    await engine.dispose()


# --------------------------------------------------------------------------- raw aio-pika


async def raw_publisher(mode: str, events: int, rate: float, seconds: float) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(os.environ["BENCH_EXCHANGE"])

    async def publish(n: int) -> None:
        body = json.dumps({"n": n, "t": time.time()}).encode()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, EVENT_TYPE)

    started = time.time()
    cpu = cpu_seconds()
    if mode == "burst":
        window = 500
        for first in range(0, events, window):
            await asyncio.gather(*(publish(n) for n in range(first, min(first + window, events))))
        total = events
    else:
        total = int(rate * seconds)

        async def publish_each(numbers: Sequence[int]) -> None:
            for n in numbers:
                await publish(n)

        await paced(publish_each, total, 1, rate, started)
    emit(
        role="writer", started=started, finished=time.time(), events=total, cpu=cpu_seconds() - cpu
    )
    await connection.close()


async def raw_consumer(expect: int) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=32)
    exchange = await channel.declare_exchange(
        os.environ["BENCH_EXCHANGE"], aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(
        f"bench.raw.{os.environ['BENCH_EXCHANGE']}", durable=True, arguments={"x-expires": 300_000}
    )
    await queue.bind(exchange, EVENT_TYPE)
    latencies: list[float] = []
    done = asyncio.Event()
    last = 0.0

    async def on_message(message: Any) -> None:
        nonlocal last
        await message.ack()
        last = time.time()
        latencies.append(last - json.loads(message.body)["t"])
        if len(latencies) >= expect:
            done.set()

    await queue.consume(on_message)
    cpu = cpu_seconds()
    emit(role="consumer", ready=True)
    await done.wait()
    emit(role="consumer", last=last, latencies=latencies, cpu=cpu_seconds() - cpu)
    await connection.close()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


# --------------------------------------------------------------------------- orchestration


class Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str, exchange: str) -> Child:
        env = {**os.environ, "BENCH_EXCHANGE": exchange}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=1 << 26,  # the consumer's line carries every latency
        )
        return cls(process)

    async def line(self, within: float = 300) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), within)
            if not raw:
                raise RuntimeError(f"child exited ({await self.process.wait()})")
            with contextlib.suppress(json.JSONDecodeError):
                parsed: dict[str, Any] = json.loads(raw)
                return parsed

    async def stop(self) -> dict[str, Any] | None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        with contextlib.suppress(Exception):
            return await self.line(within=30)
        return None


def percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


async def scenario(path: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    exchange = f"krika.bench.{uuid.uuid4().hex[:8]}"
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    expect = args.events if mode == "burst" else int(args.rate * args.seconds)
    relay_child: Child | None = None
    if path == "ours":
        await setup_database()
        consumer_child = await Child.start(
            "consumer", str(expect), str(args.prefetch), exchange=exchange
        )
        await consumer_child.line()
        relay_child = await Child.start("relay", exchange=exchange)
        await relay_child.line()
        per_tx = args.per_tx if mode == "burst" else args.steady_per_tx
        writer_args = ["writer", mode, str(args.events), str(per_tx)]
    else:
        consumer_child = await Child.start("raw-consumer", str(expect), exchange=exchange)
        await consumer_child.line()
        writer_args = ["raw-publisher", mode, str(args.events), "0"]
    busy = machine_busy_seconds()
    writer_child = await Child.start(
        *writer_args, str(args.rate), str(args.seconds), exchange=exchange
    )
    written = await writer_child.line()
    handled = await consumer_child.line()
    busy = machine_busy_seconds() - busy
    await consumer_child.stop()
    relay_cpu = (await relay_child.stop() or {}).get("cpu") if relay_child else None
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(exchange)
    latencies = handled["latencies"]
    elapsed = handled["last"] - written["started"]
    writing = written["finished"] - written["started"]
    return {
        "path": path,
        "mode": mode,
        "events": written["events"],
        "events_per_s": round(written["events"] / elapsed),
        "writer_events_per_s": round(written["events"] / writing),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "machine_cpu_ms_per_event": round(busy / written["events"] * 1000, 3),
        "writer_cpu_ms_per_event": round(written["cpu"] / written["events"] * 1000, 3),
        "relay_cpu_ms_per_event": (
            round(relay_cpu / written["events"] * 1000, 3) if relay_cpu is not None else None
        ),
        "consumer_cpu_ms_per_event": round(handled["cpu"] / written["events"] * 1000, 3),
    }


async def orchestrate(args: argparse.Namespace) -> None:
    from krika_common.testing.databases import drop_database

    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        for path in args.paths:
            row = await scenario(path, mode, args)
            rows.append(row)
            print(
                f"{row['path']:5} {row['mode']:6} {row['events']:6} events  "
                f"{row['events_per_s']:6}/s end to end  "
                f"p50 {row['p50_ms']:7} ms  p95 {row['p95_ms']:7} ms  "
                f"p99 {row['p99_ms']:7} ms  max {row['max_ms']:7} ms  "
                f"machine CPU {row['machine_cpu_ms_per_event']} ms/event",
                flush=True,
            )
    await drop_database(PG_SERVER, DATABASE)
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"events-{stamp}.json"
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "rows": rows}, indent=2))
    print(f"figures: {out}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {
        "writer",
        "relay",
        "consumer",
        "raw-publisher",
        "raw-consumer",
    }:
        role, rest = sys.argv[1], sys.argv[2:]
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        if role == "writer":
            run = writer(rest[0], int(rest[1]), int(rest[2]), float(rest[3]), float(rest[4]))
        elif role == "raw-publisher":
            run = raw_publisher(rest[0], int(rest[1]), float(rest[3]), float(rest[4]))
        elif role == "relay":
            run = relay()
        elif role == "consumer":
            run = consumer(int(rest[0]), int(rest[1]))
        else:
            run = raw_consumer(int(rest[0]))
        asyncio.run(run)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="burst size")
    parser.add_argument("--per-tx", type=int, default=10, help="events per burst transaction")
    parser.add_argument(
        "--steady-per-tx", type=int, default=1, help="events per steady transaction"
    )
    parser.add_argument("--rate", type=float, default=500, help="steady events/s")
    parser.add_argument("--seconds", type=float, default=20, help="steady duration")
    parser.add_argument("--prefetch", type=int, default=128, help="our consumer's prefetch")
    parser.add_argument("--modes", nargs="+", default=["burst", "steady"], help="burst, steady")
    parser.add_argument("--paths", nargs="+", default=["raw", "ours"], help="raw, ours")
    asyncio.run(orchestrate(parser.parse_args()))


if __name__ == "__main__":
    main()
