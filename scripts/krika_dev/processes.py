"""The children: started with prefixed output, watched, stopped together; Ctrl-C and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from krika_dev.console import console, readable
from krika_dev.plan import ROOT

STOP_TIMEOUT = 10.0

T = TypeVar("T")


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


class ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


def _die_with_parent() -> Callable[[], None] | None:
    """Children get SIGTERM if the launcher is killed outright (Linux), so no port stays taken."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    tier: int
    one_shot: bool
    done: asyncio.Task[int] | None = None

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        # Each child leads its own process group: signal anything it started too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class Supervisor:
    """Runs children with prefixed output; notices one dying; stops them all."""

    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt
        self.children: list[Child] = []
        self.stopping = False
        self.died: asyncio.Future[Child] = asyncio.get_running_loop().create_future()
        self._preexec = _die_with_parent()

    async def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, tier: int = 1
    ) -> Child:
        return await self._spawn(name, argv, env, tier=tier, one_shot=False)

    async def run(self, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        """Run a process to completion (a migration), still stoppable by Ctrl-C."""
        child = await self._spawn(name, argv, env, tier=1, one_shot=True)
        assert child.done is not None
        # Shielded: an interrupted race must not cancel the watcher stop_all() waits on.
        return await self.interrupt.race(asyncio.shield(child.done), self)

    async def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, tier: int, one_shot: bool
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,
            limit=1 << 20,
        )
        child = Child(name, proc, tier, one_shot)
        child.done = asyncio.create_task(self._watch(child))
        self.children.append(child)
        return child

    async def _pump(self, child: Child) -> None:
        stream = child.proc.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: print what there is
                raw = await stream.read(1 << 16)
            if not raw:
                return
            console.line(child.name, readable(raw.decode("utf-8", "replace").rstrip("\r\n")))

    async def _watch(self, child: Child) -> int:
        pump = asyncio.create_task(self._pump(child))
        code = await child.proc.wait()
        # Something the child started may still hold the pipe; do not wait for it forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump, timeout=2)
        if not child.one_shot and not self.stopping and not self.died.done():
            self.died.set_result(child)
        return code

    async def stop_all(self) -> None:
        """SIGTERM (apps before the infrastructure they use), wait, then SIGKILL stragglers."""
        self.stopping = True
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            group = [c for c in self.children if c.tier == tier and c.running]
            if not group:
                continue
            for child in group:
                child.signal(signal.SIGTERM)
            waits = {c.done for c in group if c.done is not None}
            all_done = asyncio.ensure_future(asyncio.wait(waits))
            force = asyncio.create_task(self.interrupt.force.wait())
            await asyncio.wait(
                {all_done, force}, timeout=STOP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            force.cancel()
            all_done.cancel()
            for child in group:
                if child.running:
                    console.say(f"{child.name} did not stop in time: SIGKILL")
                    child.signal(signal.SIGKILL)
            await asyncio.wait(waits, timeout=5)


class Interrupt:
    """Ctrl-C / SIGTERM: the first one stops gracefully, another (a second later) forces."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self._first: float | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
            self.stop.set()
            console.say(f"{sig.name}: stopping everything (again to force)")
        # The same Ctrl-C can arrive twice (terminal and `uv run`); only a later one forces.
        elif now - self._first > 1.0 and not self.force.is_set():
            self.force.set()
            console.say("forcing: SIGKILL")

    async def race(self, work: Awaitable[T], supervisor: Supervisor | None = None) -> T:
        """`work`'s result, unless a signal arrives (Stopped) or a child dies (ChildDied)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self.stop.wait())
        watch: set[asyncio.Future[Any]] = {task, stop}
        if supervisor is not None:
            watch.add(supervisor.died)
        try:
            await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.stop.is_set():
            raise Stopped
        assert supervisor is not None
        raise ChildDied(supervisor.died.result())
