"""What the benchmarks measure a process and the machine with (/proc), and their statistics."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def process_rss(pid: int) -> int:
    """Resident memory in bytes (0 when gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def process_peak_rss(pid: int) -> int:
    """The largest resident memory the process ever had (VmHWM), in bytes."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def pids_named(name: str, *, cmdline: str | None = None, exclude: str | None = None) -> list[int]:
    """Processes whose command is `name` (and whose command line holds `cmdline`, or does not
    hold `exclude`): PostgreSQL names a backend's database in its command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != name:
                continue
            line = (entry / "cmdline").read_bytes().decode(errors="replace")
            if cmdline is not None and cmdline not in line:
                continue
            if exclude is not None and exclude in line:
                continue
            found.append(int(entry.name))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / TICK, sum(fields) / TICK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def stamp(iso: str) -> float:
    """An ISO 8601 time as a POSIX timestamp."""
    return dt.datetime.fromisoformat(iso).timestamp()
