"""The launcher's output: each line prefixed with its process name, JSON log lines made readable."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable


class Console:
    """Prefixes every line with a coloured, fixed-width process name."""

    PALETTE = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")

    def __init__(self) -> None:
        self.width = 5
        self.colours: dict[str, str] = {}
        force = os.environ.get("FORCE_COLOR")
        self.colour = bool(force) or (sys.stdout.isatty() and "NO_COLOR" not in os.environ)

    def fit(self, names: Iterable[str]) -> None:
        self.width = max(self.width, *(len(n) for n in names))

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def line(self, name: str, text: str) -> None:
        if name not in self.colours:
            self.colours[name] = self.PALETTE[len(self.colours) % len(self.PALETTE)]
        prefix = self._paint(self.colours[name], f"{name:<{self.width}} |")
        sys.stdout.write("".join(f"{prefix} {part}\n" for part in text.split("\n")))
        sys.stdout.flush()

    def say(self, text: str) -> None:
        """A line from the launcher itself."""
        prefix = self._paint("1", "dev".ljust(self.width) + " |")
        sys.stdout.write(f"{prefix} {text}\n")
        sys.stdout.flush()


console = Console()


# Keys of the services' JSON log lines that `readable` folds into its fixed layout.
_LOG_LAYOUT = {"time", "level", "logger", "message", "service", "taskName", "color_message"}


def readable(line: str) -> str:
    """A JSON log line as `12:00:01 INFO  logger: message key=value`; other lines unchanged.

    A traceback in the record follows on its own lines. KRIKA_RAW_LOGS=1 keeps the JSON."""
    if not line.startswith("{") or os.environ.get("KRIKA_RAW_LOGS"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    clock = str(record.get("time", ""))[11:19]
    fields = {k: v for k, v in record.items() if k not in _LOG_LAYOUT and v not in (None, "")}
    blocks = [str(fields.pop(k)) for k in ("exc_info", "stack_info") if k in fields]
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    text = f"{clock} {record.get('level', '')!s:<5} {record.get('logger', '')}: "
    return "\n".join([f"{text}{record['message']} {extra}".rstrip(), *blocks])
