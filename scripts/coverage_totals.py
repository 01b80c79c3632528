"""The coverage totals `make test` prints at its end: one line per pytest run.

    python scripts/coverage_totals.py build/coverage libs/common services/identity gateway tests

Each run (a package's tests, or the root tests/) left a coverage.json under
build/coverage/<run>/ (see the Makefile). A run with no report (skipped: no tests; or pytest died
before coverage could save) shows as such. The percentage is coverage.py's own: covered statements
plus covered branches over all statements plus all branches. It is a number to read, not a gate.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def row(folder: Path, run: str) -> list[str]:
    report = folder / run / "coverage.json"
    if not report.is_file():
        return [run, "no report", "", ""]
    totals = json.loads(report.read_text())["totals"]
    return [
        run,
        f"{totals['covered_lines']}/{totals['num_statements']}",
        f"{totals['covered_branches']}/{totals['num_branches']}",
        f"{totals['percent_covered']:.1f}%",
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder, runs = Path(argv[0]), argv[1:]
    with contextlib.suppress(ValueError):  # shown relative to where make runs
        folder = folder.resolve().relative_to(Path.cwd())
    rows = [["package", "statements", "branches", "cover"]] + [row(folder, run) for run in runs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"=== coverage (covered/total; per-file reports: {folder}/<package>/html/index.html)")
    for first, *numbers in rows:
        cells = [n.rjust(w) for n, w in zip(numbers, widths[1:], strict=True)]
        print("  ".join([first.ljust(widths[0]), *cells]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
