"""Realtime chat benchmark: Socket.IO connections through the gateway to 2 chat replicas.

    uv run --no-sync python bench/chat.py                     # 1,000 sockets, 200 msg/s, 30 s
    uv run --no-sync python bench/chat.py --rate 100 200 400 800 --duration 30
    uv run --no-sync python bench/chat.py --connections 100 --rate 50 --duration 10 --legs chat

Two legs, each with the same users, the same conversations, the same random pairs and rates:

- `chat`: the real path. Separate processes: an nx-27017 Mongo-wire server (data in a temporary
  folder), 2 chat replicas (`python -m chat`, Socket.IO's Redis manager on a channel of this
  run's own, a Redis database index of its own, flushed before and after) and 2 gateways
  (`python -m gateway`), gateway i in front of replica i - what Swarm does with 2 gateway
  replicas: each client connects to one gateway, half of them to each. Access tokens are real
  RS256 JWTs, verified by the gateways and again by chat against a JWKS this process serves
  (krika_common.testing.jwt.TestKeys). The users are seeded in chat's `users` collection (what
  identity.user_registered would have done), each user's conversations are opened through the
  gateway (`POST /api/v1/chat/conversations`). Rate limits: the gateway's are raised (every
  connection comes from 127.0.0.1), chat's per-connection event rate is left at its default
  (10/s, burst 30: a user here sends rate/connections messages a second).
- `ceiling`: a bare `websockets` server in one process, the same framing (Engine.IO v4 /
  Socket.IO v5 text frames), no authentication, no storage, no Redis, no gateway: it acks the
  sender and forwards the message to the other participant's connection.

Clients: a minimal Engine.IO v4 / Socket.IO v5 client over `websockets` (`Peer`: open `0{..}`,
`40` -> `40{sid}`, events `42[..]`, acks `42<id>[..]` -> `43<id>[..]`, pings `2` -> `3`), one
connection per user, spread over `--workers` load-generator processes (this process only
orchestrates). Each worker sends at `rate / workers` messages a second on a fixed schedule (open
loop: a late send does not delay the next ones), from a random user of its own to one of that
user's conversations, `message` {conversation_id, body, client_id} with an ack; the body carries
the client id and the sending time (`time.time()`: sender and recipient may be in different
processes). The recipient notes the time it read the `message` event.

Figures, per leg and rate, over the `--duration` window after every connection is up:

- delivered messages/s: messages read by their recipient inside the window, per second;
- sender -> recipient latency p50/p95/p99/max (ms), split at chat's `created_at` (its clock,
  millisecond resolution, same machine) into send -> stored and stored -> received; the ack's
  latency (sender -> its ack);
- sent, acked, refused (the ack's `error`), no ack, delivered, lost (acked but never read by its
  recipient), duplicated (a message read twice by its recipient), misrouted (read by someone
  else). After the window the run waits for every ack (at most `--drain` s: a backlog is drained,
  not cut off, and how long that took is printed), then `--grace` s for the last deliveries (a
  message is pushed to its recipient before the sender's ack is sent);
- CPU of each process over the window (and the machine's busy time), the load generator's too;
- memory per connection: the RSS of each chat replica, gateway, worker (and of the ceiling
  server) before connecting and with every connection up, the difference divided by the
  connections it holds.

The rates run one after the other on the same system: chat's messages accumulate unless
`--reset-messages` deletes them before each rate (nx-27017 scans for the `client_id` look-up
chat makes per message, so on it the cost of a message grows with the messages stored; see
bench/README.md).

Prints a table per leg and writes the figures as JSON to bench/results/ (git-ignored). Every
process it starts is ended at the end, on failure too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT / "scripts"))

from krika_dev.processes import _die_with_parent  # noqa: E402
from procstat import machine_busy, percentile, pids_named, process_cpu, process_rss, stamp  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

REDIS_URL = os.environ.get("KRIKA_BENCH_REDIS", "redis://127.0.0.1:6379/13")
LIMIT = {"per_user": 10_000_000, "per_ip": 10_000_000, "window": 60}
EIO_QUERY = "EIO=4&transport=websocket"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# ---------------------------------------------------------------------------------- /proc


class Meter:
    """CPU and the largest RSS (sampled every 0.5 s) of named groups of processes over a
    window."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.cpu0: dict[str, float] = {}
        self.cpu1: dict[str, float] = {}
        self.rss: dict[str, int] = dict.fromkeys(groups, 0)
        self.machine0 = self.machine1 = (0.0, 0.0)
        self.started = self.ended = 0.0
        self._sampler: asyncio.Task[None] | None = None

    def _cpu(self) -> dict[str, float]:
        return {name: sum(process_cpu(p) for p in pids) for name, pids in self.groups.items()}

    def _sample_rss(self) -> None:
        for name, pids in self.groups.items():
            self.rss[name] = max(self.rss[name], sum(process_rss(p) for p in pids))

    async def _sample(self) -> None:
        while True:
            self._sample_rss()
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self.cpu0, self.machine0, self.started = self._cpu(), machine_busy(), time.monotonic()
        self._sampler = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        self.cpu1, self.machine1, self.ended = self._cpu(), machine_busy(), time.monotonic()
        self._sample_rss()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def figures(self) -> dict[str, Any]:
        wall = self.ended - self.started
        busy = self.machine1[0] - self.machine0[0]
        total = self.machine1[1] - self.machine0[1]
        ours = sum(self.cpu1[name] - self.cpu0[name] for name in self.groups)
        return {
            "not_ours_cores": round(max(0.0, busy - ours) / wall, 2) if wall else 0.0,
            "wall_s": round(wall, 2),
            "cores": os.cpu_count() or 1,
            "machine_busy_share": round(busy / total, 3) if total else 0.0,
            "machine_busy_cores": round(busy / wall, 2) if wall else 0.0,
            "processes": {
                name: {
                    "cpu_s": round(self.cpu1[name] - self.cpu0[name], 2),
                    "core_share": round((self.cpu1[name] - self.cpu0[name]) / wall, 3),
                    "rss_mb": round(self.rss[name] / 2**20, 1),
                }
                for name in self.groups
            },
        }


# ---------------------------------------------------------------------------------- the client


class Refused(Exception):
    """The server refused the Socket.IO connection (`44{message, data}`) or broke the protocol."""


class Peer:
    """One user's Socket.IO (v5) connection over Engine.IO v4's WebSocket transport, by hand:
    the text frames only (no binary attachments, the default namespace)."""

    __slots__ = ("acks", "closed_at", "load", "next_ack", "reader", "url", "user", "ws")

    def __init__(self, user: str, load: Load) -> None:
        self.user = user
        self.load = load
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.acks: dict[int, list[Any]] = {}
        self.next_ack = 0
        self.closed_at = 0.0
        self.url = ""

    @property
    def alive(self) -> bool:
        return self.reader is not None and not self.reader.done()

    async def open(self, url: str, compression: str | None) -> None:
        self.url, self.closed_at, self.acks = url, 0.0, {}
        ws = self.ws = await connect(
            url,
            compression=compression,
            ping_interval=None,  # Engine.IO pings: the server sends `2`, we answer `3`
            open_timeout=60,
            close_timeout=2,
            max_size=2**20,
            proxy=None,
            user_agent_header=None,
        )
        opening = await ws.recv()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise Refused(f"no Engine.IO open packet: {opening!r:.100}")
        await ws.send("40")
        while True:  # the namespace's CONNECT answer (anything before it is not ours yet)
            frame = await ws.recv()
            if not isinstance(frame, str):
                continue
            if frame.startswith("40"):
                break
            if frame.startswith("44"):
                raise Refused(str(json.loads(frame[2:]).get("message")))
            if frame == "2":
                await ws.send("3")
        self.reader = asyncio.create_task(self._read(ws))

    async def _read(self, ws: ClientConnection) -> None:
        load = self.load
        try:
            async for frame in ws:
                if not isinstance(frame, str):
                    continue
                head = frame[:2]
                if head == "42":
                    load.on_event(self, frame)
                elif head == "43":
                    load.on_ack(self, frame)
                elif frame == "2":
                    await ws.send("3")
                elif frame[:1] == "1":  # Engine.IO close
                    break
                else:
                    load.other[head] += 1
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = time.time()
            load.closed[f"{ws.close_code} {ws.close_reason}".strip()] += 1

    async def send_message(
        self, conversation_id: str, body: str, client_id: str, record: list[Any]
    ) -> None:
        """`message` with an ack; `record` is completed when the ack comes."""
        ws = self.ws
        assert ws is not None
        ack = self.next_ack
        self.next_ack += 1
        self.acks[ack] = record
        payload = {"conversation_id": conversation_id, "body": body, "client_id": client_id}
        await ws.send(f'42{ack}["message",{json.dumps(payload)}]')

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


# A sent message: [client_id, sender, recipient, conversation, scheduled, sent, acked, error]
SENT_AT, ACKED_AT, ERROR = 5, 6, 7


@dataclass
class Load:
    """One load-generator process: its users' connections and what they sent and read."""

    index: int
    workers: int
    users: list[dict[str, Any]]  # this worker's: {id, url, gateway}
    partners: dict[str, list[tuple[str, str]]]  # user -> [(conversation, other user)]
    compression: str | None
    peers: list[Peer] = field(default_factory=list)
    sent: list[list[Any]] = field(default_factory=list)
    # Received `message` events: [client_id, recipient, read at, sent at (body), created_at]
    received: list[list[Any]] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)

    def on_event(self, peer: Peer, frame: str) -> None:
        now = time.time()
        name, data = json.loads(frame[2:])[:2]
        self.events[name] += 1
        if name == "message":
            client_id, _, sent_at = data["body"].partition("|")
            self.received.append([client_id, peer.user, now, float(sent_at), data["created_at"]])
        elif name == "error":
            self.errors[str(data.get("error"))] += 1

    def on_ack(self, peer: Peer, frame: str) -> None:
        now = time.time()
        end = 2
        while frame[end].isdigit():
            end += 1
        record = peer.acks.pop(int(frame[2:end]), None)
        if record is None:
            self.other["43 unknown ack"] += 1
            return
        answer = json.loads(frame[end:])
        record[ACKED_AT] = now
        if answer and isinstance(answer[0], dict) and "error" in answer[0]:
            record[ERROR] = str(answer[0]["error"])

    async def connect_all(self, concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        refused: Counter[str] = Counter()
        per_gateway: Counter[int] = Counter()

        async def one(user: dict[str, Any]) -> None:
            peer = Peer(user["id"], self)
            async with gate:
                try:
                    await peer.open(user["url"], self.compression)
                except (OSError, TimeoutError, ConnectionClosed, Refused) as exc:
                    refused[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    await peer.close()
                    return
            self.peers.append(peer)
            per_gateway[int(user["gateway"])] += 1

        started = time.monotonic()
        await asyncio.gather(*(one(u) for u in self.users))
        return {
            "event": "connected",
            "connected": len(self.peers),
            "refused": dict(refused),
            "per_gateway": {str(k): v for k, v in per_gateway.items()},
            "seconds": round(time.monotonic() - started, 2),
        }

    async def run(
        self, tag: str, rate: float, start: float, duration: float, drain: float, seed: int
    ) -> dict[str, Any]:
        """Send at `rate`/s from `start` (time.time()) for `duration` s, then wait until every
        message sent has its ack (at most `drain` s more): a backlog is drained, not cut off."""
        self.sent, self.received = [], []
        for counter in (self.events, self.errors, self.other, self.closed):
            counter.clear()
        rng = random.Random(seed)
        peers = self.peers
        total = int(rate * duration)
        await asyncio.sleep(max(0.0, start - time.time()))
        k = 0
        while k < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            while k < due:
                peer = rng.choice(peers)
                conversation, recipient = rng.choice(self.partners[peer.user])
                client_id = f"{tag}-{self.index}-{k}"
                now = time.time()
                record = [client_id, peer.user, recipient, conversation, start + k / rate, now]
                record += [0.0, ""]
                self.sent.append(record)
                try:
                    await peer.send_message(conversation, f"{client_id}|{now!r}", client_id, record)
                except ConnectionClosed:
                    record[ERROR] = "connection closed"
                k += 1
            await asyncio.sleep(max(0.0, start + k / rate - time.time()))
        deadline = start + duration + drain
        while any(p.acks for p in peers if p.alive) and time.time() < deadline:  # noqa: ASYNC110 - acks come on every peer's reader: polled
            await asyncio.sleep(0.05)
        return {
            "event": "drained",
            "pending": sum(len(p.acks) for p in peers if p.alive),
            "at": time.time(),
        }

    def records(self) -> dict[str, Any]:
        """What the last run sent and read."""
        alive = sum(1 for p in self.peers if p.alive)
        return {
            "event": "result",
            "closed_at": {p.user: p.closed_at for p in self.peers if p.closed_at},
            "sent": self.sent,
            "received": self.received,
            "events": dict(self.events),
            "errors": dict(self.errors),
            "other": dict(self.other),
            "closed": dict(self.closed),
            "alive": alive,
        }

    async def reconnect(self, concurrency: int) -> dict[str, Any]:
        """Open again the connections the server closed (a client would reconnect)."""
        gate = asyncio.Semaphore(concurrency)
        failed: Counter[str] = Counter()

        async def one(peer: Peer) -> None:
            async with gate:
                await peer.close()
                try:
                    await peer.open(peer.url, self.compression)
                except (OSError, TimeoutError, ConnectionClosed, Refused) as exc:
                    failed[f"{type(exc).__name__}: {exc}"[:120]] += 1

        dead = [p for p in self.peers if not p.alive]
        await asyncio.gather(*(one(p) for p in dead))
        return {"event": "reconnected", "dead": len(dead), "failed": dict(failed)}

    async def close_all(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers))


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def worker_async(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    """A load-generator process: commands on stdin, one JSON line per answer on stdout."""
    mine = [u for u in plan["users"] if u["worker"] == args.index]
    partners: dict[str, list[tuple[str, str]]] = {u["id"]: [] for u in plan["users"]}
    for conversation, a, b in plan["conversations"]:
        partners[a].append((conversation, b))
        partners[b].append((conversation, a))
    urls = plan["targets"][args.target]
    users = []
    for user in mine:
        base = urls[user["gateway"] % len(urls)]
        credential = (
            f"access_token={user['token']}" if args.target == "chat" else f"user={user['id']}"
        )
        users.append(
            {
                "id": user["id"],
                "gateway": user["gateway"] % len(urls),
                "url": f"{base}&{credential}",
            }
        )
    compression = None if args.compression == "none" else args.compression
    load = Load(args.index, args.workers, users, partners, compression)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    emit({"event": "started", "users": len(users)})
    while line := await stdin.readline():
        command = json.loads(line)
        if command["cmd"] == "connect":
            emit(await load.connect_all(command["concurrency"]))
        elif command["cmd"] == "run":
            emit(
                await load.run(
                    command["tag"],
                    command["rate"],
                    command["start"],
                    command["duration"],
                    command["drain"],
                    command["seed"],
                )
            )
        elif command["cmd"] == "report":
            emit(load.records())
        elif command["cmd"] == "reconnect":
            emit(await load.reconnect(command["concurrency"]))
        elif command["cmd"] == "quit":
            break
    await load.close_all()


# ---------------------------------------------------------------------------------- the ceiling


async def ceiling_async(port: int, plan: dict[str, Any], compression: str | None) -> None:
    """A bare `websockets` server speaking the same frames: acks the sender, forwards the
    message to the conversation's other participant. Nothing else."""
    participants = {c: (a, b) for c, a, b in plan["conversations"]}
    peers: dict[str, ServerConnection] = {}

    async def handler(ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        user = query["user"][0]
        sid = uuid.uuid4().hex
        opening = {"sid": sid, "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000}
        await ws.send("0" + json.dumps(opening | {"maxPayload": 1_000_000}))
        if await ws.recv() != "40":
            return
        await ws.send("40" + json.dumps({"sid": uuid.uuid4().hex}))
        peers[user] = ws
        try:
            async for frame in ws:
                if not isinstance(frame, str) or not frame.startswith("42"):
                    continue
                end = 2
                while frame[end].isdigit():
                    end += 1
                _, data = json.loads(frame[end:])[:2]
                a, b = participants[data["conversation_id"]]
                now = dt.datetime.now(dt.UTC)
                message = {
                    "id": str(uuid.uuid4()),
                    "conversation_id": data["conversation_id"],
                    "sender_id": user,
                    "body": data["body"],
                    "attachments": [],
                    "client_id": data.get("client_id"),
                    "created_at": now.isoformat(timespec="milliseconds"),
                }
                other = peers.get(b if user == a else a)
                if other is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await other.send("42" + json.dumps(["message", message]))
                if end > 2:
                    await ws.send(f"43{frame[2:end]}" + json.dumps([message]))
        except ConnectionClosed:
            pass
        finally:
            if peers.get(user) is ws:
                del peers[user]

    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=compression,
        ping_interval=None,
        max_size=2**20,
        backlog=2048,
    ):
        await asyncio.Future()


def run_ceiling(args: argparse.Namespace) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    compression = None if args.compression == "none" else args.compression
    asyncio.run(ceiling_async(args.port, json.loads(Path(args.plan).read_text()), compression))


def run_worker(args: argparse.Namespace) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(worker_async(args, json.loads(Path(args.plan).read_text())))


# ---------------------------------------------------------------------------------- processes


def free_port() -> int:
    from krika_common.server import free_port as free

    return free()


class Stack:
    """The processes this run started (each in a session of its own, told to die with us);
    `stop_all` ends them: SIGTERM, then SIGKILL after STOP_TIMEOUT."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.procs[name] = proc
        return proc.pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, name: str, url: str, within: float = START_TIMEOUT) -> None:
        import httpx

        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while True:
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}) before it was ready:\n"
                        f"{self.log_tail(name)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: {url} not ready within {within:.0f} s")
                await asyncio.sleep(0.1)

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


@dataclass
class Workers:
    """The load-generator processes (asyncio subprocesses: commands in, JSON lines out)."""

    procs: list[asyncio.subprocess.Process]
    logs: list[IO[bytes]]

    @classmethod
    async def start(
        cls, count: int, plan: Path, target: str, compression: str, logs: Path
    ) -> Workers:
        procs = []
        files: list[IO[bytes]] = []
        for index in range(count):
            log = (logs / f"worker-{target}-{index}.log").open("ab")
            files.append(log)
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "worker",
                    *("--plan", str(plan), "--index", str(index), "--workers", str(count)),
                    *("--target", target, "--compression", compression),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    limit=2**28,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
            )
        workers = cls(procs, files)
        await workers.read_all(60)
        return workers

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def tell(self, command: dict[str, Any]) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(command) + "\n").encode())
            await proc.stdin.drain()

    async def read_all(self, within: float) -> list[dict[str, Any]]:
        async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"load-generator worker {proc.pid} ended ({proc.returncode})")
            answer: dict[str, Any] = json.loads(line)
            return answer

        return list(await asyncio.wait_for(asyncio.gather(*map(one, self.procs)), within))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.tell({"cmd": "quit"})

        async def end(proc: asyncio.subprocess.Process) -> None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:  # busy in a run: nothing of it is kept
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

        await asyncio.gather(*(end(p) for p in self.procs))
        for log in self.logs:
            log.close()


# ---------------------------------------------------------------------------------- the plan


def make_plan(connections: int, partners: int, workers: int, seed: int) -> dict[str, Any]:
    """Users (one connection each; user i on gateway i % 2 and worker (i // 2) % workers) and
    their conversations: `partners` random perfect matchings over the users, no pair twice."""
    rng = random.Random(seed)
    users: list[dict[str, Any]] = [
        {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "gateway": i % 2}
        | {"worker": (i // 2) % workers}
        for i in range(connections)
    ]
    ids = [u["id"] for u in users]
    pairs: set[tuple[str, str]] = set()
    for _ in range(partners):
        for _attempt in range(100):
            order = ids[:]
            rng.shuffle(order)
            matching = {
                (min(a, b), max(a, b)) for a, b in zip(order[::2], order[1::2], strict=False)
            }
            if not matching & pairs:
                pairs |= matching
                break
    conversations = [[str(uuid.uuid4()), a, b] for a, b in sorted(pairs)]
    return {"users": users, "conversations": conversations, "targets": {}}


# ---------------------------------------------------------------------------------- the chat leg


def process_env(settings: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    return base | {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "NO_PROXY": "127.0.0.1"} | settings


async def serve_jwks(jwks: dict[str, Any], port: int) -> Any:
    from aiohttp import web

    async def keys(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def start_chat(
    stack: Stack, folder: Path, plan: dict[str, Any], run_id: str, args: argparse.Namespace
) -> dict[str, int]:
    """nx-27017, the users seeded, 2 chat replicas, 2 gateways; their pids by name."""
    from pymongo import MongoClient
    from redis.asyncio import Redis

    from krika_common.server import port_open

    redis: Redis = Redis.from_url(args.redis_url)
    await redis.flushdb()
    await redis.aclose()

    data = folder / "mongo"
    data.mkdir()
    mongo_port = free_port()
    stack.spawn(
        "nx-27017",
        [
            str(Path(sys.executable).with_name("nx-27017")),
            *("--host", "127.0.0.1", "--port", str(mongo_port), "--data-dir", str(data)),
            *("--pid-file", str(data / "nx.pid"), "--log-file", str(data / "nx.log")),
        ],
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", mongo_port, 0.2):
        if stack.dead() or time.monotonic() > deadline:
            raise RuntimeError(f"nx-27017 did not start:\n{stack.log_tail('nx-27017')}")
        await asyncio.sleep(0.1)
    mongo_url = f"mongodb://127.0.0.1:{mongo_port}"
    database = f"krika_bench_chat_{run_id}"
    plan["mongo_url"], plan["database"] = mongo_url, database
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    try:
        client[database]["users"].insert_many(
            [{"_id": u["id"], "roles": ["customer"]} for u in plan["users"]]
        )
    finally:
        client.close()

    jwks_url = plan["jwks_url"]
    edge_secret = secrets.token_urlsafe(32)
    chat_ports = [free_port(), free_port()]
    for k, port in enumerate(chat_ports, 1):
        settings = {
            "CHAT_ENVIRONMENT": "test",
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(port),
            "CHAT_MONGODB_URL": mongo_url,
            "CHAT_MONGODB_DATABASE": database,
            "CHAT_REDIS_URL": args.redis_url,
            "CHAT_JWKS_URL": jwks_url,
            "CHAT_EDGE_SECRET": edge_secret,
            "CHAT_FILE_LINK_SECRET": secrets.token_urlsafe(32),
            "CHAT_STORAGE_URL": (folder / "files").as_uri(),
            "CHAT_SOCKETIO_CHANNEL": f"krika:bench:chat:{run_id}",
            "CHAT_LOG_LEVEL": "INFO",
        }
        stack.spawn(f"chat-{k}", [sys.executable, "-m", "chat"], process_env(settings))
    await asyncio.gather(
        *(
            stack.wait_ready(f"chat-{k}", f"http://127.0.0.1:{port}/readyz")
            for k, port in enumerate(chat_ports, 1)
        )
    )
    gateway_ports = []
    for k, chat_port in enumerate(chat_ports, 1):
        port, ops = free_port(), free_port()
        gateway_ports.append(port)
        settings = {
            "GATEWAY_ENVIRONMENT": "test",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_OPS_PORT": str(ops),
            "GATEWAY_CHAT_URL": f"http://127.0.0.1:{chat_port}",
            "GATEWAY_JWKS_URL": jwks_url,
            "GATEWAY_REDIS_URL": args.redis_url,
            "GATEWAY_EDGE_SECRET": edge_secret,
            "GATEWAY_CONSUME_EVENTS": "false",
            "GATEWAY_LOG_LEVEL": "INFO",
            "GATEWAY_RATE_LIMIT_DEFAULT": json.dumps(LIMIT),
            "GATEWAY_RATE_LIMITS": json.dumps({"auth": LIMIT}),
        }
        stack.spawn(f"gateway-{k}", [sys.executable, "-m", "gateway"], process_env(settings))
        await stack.wait_ready(f"gateway-{k}", f"http://127.0.0.1:{ops}/readyz")
    plan["api"] = [f"http://127.0.0.1:{p}/api/v1" for p in gateway_ports]
    plan["chat_ports"] = chat_ports
    plan["targets"]["chat"] = [f"ws://127.0.0.1:{p}/socket.io/?{EIO_QUERY}" for p in gateway_ports]
    return {name: stack.pid(name) for name in stack.procs}


def messages_stored(plan: dict[str, Any], reset: bool) -> int:
    """How many messages chat's database holds (deleted first with `--reset-messages`)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(plan["mongo_url"])
    try:
        messages = client[plan["database"]]["messages"]
        if reset:
            messages.delete_many({})
        return messages.count_documents({})
    finally:
        client.close()


async def open_conversations(plan: dict[str, Any], tokens: dict[str, str]) -> float:
    """Each pair's conversation, through the gateways (POST /chat/conversations); the ids
    replace the plan's. Seconds it took."""
    import httpx

    gate = asyncio.Semaphore(16)
    gateway_of = {u["id"]: u["gateway"] for u in plan["users"]}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:

        async def one(row: list[str]) -> None:
            _, a, b = row
            api = plan["api"][gateway_of[a]]
            async with gate:
                answer = await http.post(
                    f"{api}/chat/conversations",
                    json={"participant_ids": [b]},
                    headers={"Authorization": f"Bearer {tokens[a]}"},
                )
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"POST /chat/conversations: {answer.status_code} {answer.text}")
            row[0] = answer.json()["id"]

        await asyncio.gather(*(one(row) for row in plan["conversations"]))
    return time.monotonic() - started


async def chat_metrics(ports: list[int]) -> dict[str, float]:
    """chat's own counters (events by outcome, forced disconnects, messages), both replicas."""
    import httpx

    totals: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        for port in ports:
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                for line in text.splitlines():
                    if line.startswith(
                        (
                            "krika_chat_socket_events_total",
                            "krika_chat_forced_disconnects_total",
                            "krika_chat_messages_total",
                        )
                    ):
                        name, _, value = line.rpartition(" ")
                        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


# ---------------------------------------------------------------------------------- a leg


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def analyse(
    results: list[dict[str, Any]], start: float, duration: float, replica: dict[str, int]
) -> dict[str, Any]:
    sent = [row for r in results for row in r["sent"]]
    by_id = {row[0]: row for row in sent}
    reads: Counter[str] = Counter()
    latency, to_store, from_store = [], [], []
    in_window = misrouted = unknown = body_clock_mismatch = 0
    for client_id, recipient, read_at, sent_at, created_at in (
        row for r in results for row in r["received"]
    ):
        row = by_id.get(client_id)
        if row is None:
            unknown += 1
            continue
        if recipient != row[2]:
            misrouted += 1
            continue
        reads[client_id] += 1
        if reads[client_id] > 1:
            continue
        if abs(sent_at - row[SENT_AT]) > 1e-6:
            body_clock_mismatch += 1
        latency.append((read_at - sent_at) * 1000)
        created = stamp(created_at)
        to_store.append((created - sent_at) * 1000)
        from_store.append((read_at - created) * 1000)
        if start <= read_at <= start + duration:
            in_window += 1
    closed: dict[str, float] = {}
    for r in results:
        closed |= r["closed_at"]
    acked = [row for row in sent if row[ACKED_AT] and not row[ERROR]]
    refused = Counter(row[ERROR] for row in sent if row[ERROR])
    no_ack = [row for row in sent if not row[ACKED_AT] and not row[ERROR]]
    lost = [row for row in acked if not reads[row[0]]]
    lost_to_closed = [row for row in lost if row[2] in closed]
    sent_in_window = [row for row in sent if row[SENT_AT] <= start + duration]
    cross = sum(1 for row in sent if replica[row[1]] != replica[row[2]])
    return {
        "sent": len(sent),
        "offered_per_s": round(len(sent) / duration, 1),
        "sent_late_share": round(
            sum(1 for row in sent if row[SENT_AT] > start + duration) / max(1, len(sent)), 4
        ),
        "acked": len(acked),
        "refused": dict(refused),
        "no_ack": len(no_ack),
        "delivered": len(reads),
        "delivered_in_window": in_window,
        "delivered_per_s": round(in_window / duration, 1),
        "lost": len(lost),
        "lost_recipient_disconnected": len(lost_to_closed),
        "lost_recipient_connected": len(lost) - len(lost_to_closed),
        "lost_recipient_connected_across_replicas": sum(
            1 for row in lost if row[2] not in closed and replica[row[1]] != replica[row[2]]
        ),
        "no_ack_sender_disconnected": sum(1 for row in no_ack if row[1] in closed),
        "no_ack_not_delivered": sum(1 for row in no_ack if not reads[row[0]]),
        "disconnected_in_level": len(closed),
        "duplicated": sum(n - 1 for n in reads.values() if n > 1),
        "misrouted": misrouted,
        "unknown": unknown,
        "body_clock_mismatch": body_clock_mismatch,
        "cross_replica_share": round(cross / max(1, len(sent)), 3),
        "latency_ms": summary(latency),
        "send_to_stored_ms": summary(to_store),
        "stored_to_read_ms": summary(from_store),
        "ack_ms": summary([(row[ACKED_AT] - row[SENT_AT]) * 1000 for row in acked]),
        "generator_lag_ms": summary([(row[SENT_AT] - row[4]) * 1000 for row in sent_in_window]),
        "events": dict(sum((Counter(r["events"]) for r in results), Counter())),
        "error_events": dict(sum((Counter(r["errors"]) for r in results), Counter())),
        "connections_alive": sum(r["alive"] for r in results),
        "closed": dict(sum((Counter(r["closed"]) for r in results), Counter())),
    }


async def run_leg(
    leg: str,
    plan: dict[str, Any],
    plan_file: Path,
    servers: dict[str, list[int]],
    held: dict[str, str],
    args: argparse.Namespace,
    logs: Path,
) -> dict[str, Any]:
    """Connect every user (workers), then each rate in turn. `servers`: the processes to
    meter; `held`: server name -> the connections it holds (those of gateway "0" or "1", or
    "all")."""
    replica = {u["id"]: u["gateway"] for u in plan["users"]}
    rss_before = {name: sum(process_rss(p) for p in pids) for name, pids in servers.items()}
    workers = await Workers.start(args.workers, plan_file, leg, args.compression, logs)
    try:
        worker_rss0 = sum(process_rss(p) for p in workers.pids)
        await workers.tell({"cmd": "connect", "concurrency": args.connect_concurrency})
        connected = await workers.read_all(600)
        total = sum(c["connected"] for c in connected)
        per_gateway: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        for c in connected:
            per_gateway.update(c["per_gateway"])
            refused.update(c["refused"])
        print(
            f"[{leg}] {total} of {len(plan['users'])} connected in "
            f"{max(c['seconds'] for c in connected):.1f} s"
            + (f"; refused: {dict(refused)}" if refused else ""),
            flush=True,
        )
        await asyncio.sleep(3)  # presence announcements and the like settle
        memory: dict[str, Any] = {}
        for name, pids in servers.items():
            after = sum(process_rss(p) for p in pids)
            holds = total if held[name] == "all" else per_gateway[held[name]]
            memory[name] = {
                "rss_before_mb": round(rss_before[name] / 2**20, 1),
                "rss_connected_mb": round(after / 2**20, 1),
                "connections": holds,
                "kb_per_connection": round((after - rss_before[name]) / 1024 / max(1, holds), 1),
            }
        worker_rss1 = sum(process_rss(p) for p in workers.pids)
        memory["load generator"] = {
            "rss_before_mb": round(worker_rss0 / 2**20, 1),
            "rss_connected_mb": round(worker_rss1 / 2**20, 1),
            "connections": total,
            "kb_per_connection": round((worker_rss1 - worker_rss0) / 1024 / max(1, total), 1),
        }
        groups = dict(servers) | {
            "redis-server (all)": pids_named("redis-server"),
            "load generator": workers.pids,
            "bench (orchestrator)": [os.getpid()],
        }
        levels = []
        for n, rate in enumerate(args.rate):
            if n:
                await workers.tell({"cmd": "reconnect", "concurrency": args.connect_concurrency})
                again = await workers.read_all(600)
                dead = sum(a["dead"] for a in again)
                if dead:
                    print(f"[{leg}] reconnected {dead} connections the server had closed: {again}")
            stored = None
            if leg == "chat":
                stored = await asyncio.to_thread(messages_stored, plan, args.reset_messages)
            start = time.time() + 1.0
            await workers.tell(
                {
                    "cmd": "run",
                    "tag": f"{leg[:2]}{n}",
                    "rate": rate / args.workers,
                    "start": start,
                    "duration": args.duration,
                    "drain": args.drain,
                    "seed": args.seed * 1000 + n,
                }
            )
            await asyncio.sleep(max(0.0, start - time.time()))
            meter = Meter(groups)
            meter.start()
            await asyncio.sleep(args.duration)
            await meter.stop()
            drained = await workers.read_all(args.drain + 120)
            await asyncio.sleep(args.grace)  # the last deliveries of the last acked messages
            await workers.tell({"cmd": "report"})
            results = await workers.read_all(120)
            level = {"leg": leg, "rate": rate, "duration_s": args.duration}
            if stored is not None:
                level["stored_before"] = stored
            level |= analyse(results, start, args.duration, replica)
            level["drained_after_s"] = round(
                max(0.0, max(d["at"] for d in drained) - start - args.duration), 2
            )
            level |= meter.figures()
            level["heaviest"] = max(
                level["processes"], key=lambda k: level["processes"][k]["core_share"]
            )
            report(level)
            levels.append(level)
            await asyncio.sleep(2)
        return {
            "connected": total,
            "refused": dict(refused),
            "connect_seconds": max(c["seconds"] for c in connected),
            "memory": memory,
            "levels": levels,
        }
    finally:
        await workers.stop()


def report(level: dict[str, Any]) -> None:
    lat = level["latency_ms"]
    print(
        f"\n=== {level['leg']}: {level['rate']} msg/s offered for {level['duration_s']:.0f} s -> "
        f"{level['delivered_per_s']} delivered/s ({level['delivered_in_window']} read in the "
        f"window)"
        + (
            f"; {level['cross_replica_share'] * 100:.0f} % across replicas"
            if level["leg"] == "chat"
            else ""
        )
    )
    print(
        f"sender -> recipient ms: p50 {lat.get('p50')}  p95 {lat.get('p95')}  "
        f"p99 {lat.get('p99')}  max {lat.get('max')}"
    )
    for label, key in (
        ("  send -> stored", "send_to_stored_ms"),
        ("  stored -> read", "stored_to_read_ms"),
        ("  ack", "ack_ms"),
        ("  generator lag", "generator_lag_ms"),
    ):
        part = level[key]
        print(f"{label}: p50 {part.get('p50')}  p95 {part.get('p95')}  p99 {part.get('p99')}")
    print(
        f"sent {level['sent']}, acked {level['acked']}, refused {level['refused'] or 0}, "
        f"no ack {level['no_ack']} ({level['no_ack_sender_disconnected']} on connections the "
        f"server closed), delivered {level['delivered']}, lost {level['lost']} "
        f"({level['lost_recipient_disconnected']} to recipients the server disconnected), "
        f"duplicated {level['duplicated']}, misrouted {level['misrouted']}"
    )
    print(
        f"connections the server closed during the level: {level['disconnected_in_level']} "
        f"{level['closed'] or ''}; alive at the end {level['connections_alive']}; error events "
        f"{level['error_events'] or 'none'}; messages stored before the level: "
        f"{level.get('stored_before', '-')}"
    )
    print(
        f"machine busy: {level['machine_busy_share'] * 100:.0f} % of {level['cores']} cores "
        f"({level['not_ours_cores']} cores by processes not of this run); heaviest: "
        f"{level['heaviest']}; backlog drained {level['drained_after_s']} s after the window"
    )
    print(f"  {'process':<24}{'CPU s':>8}{'% of a core':>13}{'RSS MB':>9}")
    ordered = sorted(level["processes"].items(), key=lambda kv: -kv[1]["core_share"])
    for name, p in ordered:
        print(f"  {name:<24}{p['cpu_s']:>8.1f}{p['core_share'] * 100:>12.0f}%{p['rss_mb']:>9.1f}")
    sys.stdout.flush()


def table(legs: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| leg | offered msg/s | delivered msg/s | p50 ms | p95 ms | p99 ms | max ms | "
        "ack p99 ms | lost | dup | refused / no ack | server-closed sockets | drained after s "
        "| stored before | machine busy (not this run's) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for name, leg in legs.items():
        for lv in leg["levels"]:
            lat = lv["latency_ms"]
            refused = sum(lv["refused"].values())
            lines.append(
                f"| {name} | {lv['offered_per_s']:g} | {lv['delivered_per_s']:g} | "
                f"{lat.get('p50')} | {lat.get('p95')} | {lat.get('p99')} | {lat.get('max')} | "
                f"{lv['ack_ms'].get('p99')} | {lv['lost']} | {lv['duplicated']} | "
                f"{refused} / {lv['no_ack']} | {lv['disconnected_in_level']} | "
                f"{lv['drained_after_s']} | {lv.get('stored_before', '-')} | "
                f"{lv['machine_busy_share'] * 100:.0f} % ({lv['not_ours_cores']} cores) |"
            )
    lines += [
        "",
        "| leg | process | RSS before MB | RSS connected MB | connections | KB per conn |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|")
    for name, leg in legs.items():
        for process, m in leg["memory"].items():
            lines.append(
                f"| {name} | {process} | {m['rss_before_mb']} | {m['rss_connected_mb']} | "
                f"{m['connections']} | {m['kb_per_connection']} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    from krika_common.testing.jwt import TestKeys

    # SIGINT / SIGTERM: cancel, so that every process started is ended (the `finally`s).
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)

    run_id = uuid.uuid4().hex[:8]
    plan = make_plan(args.connections, args.partners, args.workers, args.seed)
    legs: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="krika-bench-chat-") as tmp:
        folder = Path(tmp)
        plan_file = folder / "plan.json"
        stack = Stack(folder)
        try:
            if "chat" in args.legs:
                keys = TestKeys()
                jwks_port = free_port()
                runner = await serve_jwks(keys.jwks(), jwks_port)
                try:
                    plan["jwks_url"] = f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json"
                    tokens = {u["id"]: keys.mint(u["id"], ttl=4 * 3600) for u in plan["users"]}
                    print("starting nx-27017, 2 chat replicas, 2 gateways...", flush=True)
                    pids = await start_chat(stack, folder, plan, run_id, args)
                    took = await open_conversations(plan, tokens)
                    print(
                        f"seeded {len(plan['users'])} users, opened "
                        f"{len(plan['conversations'])} conversations in {took:.0f} s",
                        flush=True,
                    )
                    for user in plan["users"]:
                        user["token"] = tokens[user["id"]]
                    plan_file.write_text(json.dumps(plan))
                    servers = {name: [pid] for name, pid in pids.items()}
                    held = {"chat-1": "0", "chat-2": "1", "gateway-1": "0", "gateway-2": "1"}
                    held["nx-27017"] = "all"
                    legs["chat"] = await run_leg(
                        "chat", plan, plan_file, servers, held, args, stack.logs
                    )
                    legs["chat"]["conversations_seconds"] = round(took, 1)
                    legs["chat"]["chat_metrics"] = await chat_metrics(plan["chat_ports"])
                    if dead := stack.dead():
                        failed.append(f"processes died: {dead}")
                except Exception as exc:  # the other leg still runs, the figures are written
                    traceback.print_exc()
                    failed.append(f"chat leg: {type(exc).__name__}: {exc}")
                finally:
                    stack.stop_all()
                    await runner.cleanup()
                    from redis.asyncio import Redis

                    redis: Redis = Redis.from_url(args.redis_url)
                    await redis.flushdb()
                    await redis.aclose()
            if "ceiling" in args.legs:
                port = free_port()
                plan["targets"]["ceiling"] = [f"ws://127.0.0.1:{port}/socket.io/?{EIO_QUERY}"]
                plan_file.write_text(json.dumps(plan))
                stack.spawn(
                    "ceiling",
                    [
                        *(sys.executable, __file__, "ceiling", "--port", str(port)),
                        *("--plan", str(plan_file), "--compression", args.compression),
                    ],
                )
                from krika_common.server import port_open

                deadline = time.monotonic() + 30
                while not port_open("127.0.0.1", port, 0.2):
                    if stack.dead() or time.monotonic() > deadline:
                        raise RuntimeError(f"ceiling: {stack.log_tail('ceiling')}")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
                servers = {"ceiling server": [stack.pid("ceiling")]}
                try:
                    legs["ceiling"] = await run_leg(
                        "ceiling",
                        plan,
                        plan_file,
                        servers,
                        {"ceiling server": "all"},
                        args,
                        stack.logs,
                    )
                except Exception as exc:
                    traceback.print_exc()
                    failed.append(f"ceiling leg: {type(exc).__name__}: {exc}")
        finally:
            stack.stop_all()
            if args.keep_logs:
                kept = RESULTS / f"chat-logs-{run_id}"
                import shutil

                shutil.copytree(stack.logs, kept, dirs_exist_ok=True)
                print(f"logs: {kept.relative_to(ROOT)}")
    print()
    print(table(legs))
    RESULTS.mkdir(exist_ok=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"chat-{when}.json"
    out.write_text(
        json.dumps(
            {
                "at": when,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "args": vars(args),
                "conversations": len(plan["conversations"]),
                "legs": legs,
                "failed": failed,
            },
            indent=2,
        )
    )
    print(f"figures: {out.relative_to(ROOT)}")
    broken = any(
        lv["lost"] or lv["duplicated"] or lv["misrouted"]
        for leg in legs.values()
        for lv in leg["levels"]
    )
    return 1 if failed or broken else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="(internal) a load-generator process")
    worker.add_argument("--plan", required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--workers", type=int, required=True)
    worker.add_argument("--target", choices=("chat", "ceiling"), required=True)
    worker.add_argument("--compression", default="deflate")
    ceiling = sub.add_parser("ceiling", help="(internal) the bare websockets server")
    ceiling.add_argument("--port", type=int, required=True)
    ceiling.add_argument("--plan", required=True)
    ceiling.add_argument("--compression", default="deflate")
    parser.add_argument("--connections", type=int, default=1000, help="users, one socket each")
    parser.add_argument("--rate", type=float, nargs="+", default=[200.0], help="messages/s")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument(
        "--drain", type=float, default=120.0, help="seconds to wait for the acks after a window"
    )
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds to wait for deliveries after the acks"
    )
    parser.add_argument("--partners", type=int, default=2, help="conversations per user")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--connect-concurrency", type=int, default=16, help="per worker")
    parser.add_argument(
        "--legs", nargs="+", choices=("chat", "ceiling"), default=["chat", "ceiling"]
    )
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate offered by the clients (browsers offer it)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true", help="copy the logs to bench/results")
    parser.add_argument(
        "--reset-messages",
        action="store_true",
        help="delete chat's stored messages before each rate (each starts on the same database)",
    )
    args = parser.parse_args()
    if args.command == "worker":
        run_worker(args)
    elif args.command == "ceiling":
        run_ceiling(args)
    else:
        sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
