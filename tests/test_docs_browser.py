"""The API docs in a real browser: Swagger UI at /api/docs lists every running service's API.

Starts the real identity and catalog services and a gateway in front of them, then has
Debian's headless Chromium load `<gateway>/api/docs` with every host name but 127.0.0.1
unresolvable (a machine without internet), run the page's JavaScript
(`--virtual-time-budget`: virtual time stands still while a fetch is pending, so the dump
waits for /api/openapi.json) and print the rendered DOM (`--dump-dom`), with a screenshot in
the test's tmp dir. Every operation of the gateway's merged spec must be there, as Swagger UI
renders it: `div.opblock.opblock-<method>` holding
`span.opblock-summary-path[data-path=<path>]`.

Chromium is required, not optional: CI (`.ci/run`) installs it, and its absence is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.routes import SERVICE_OF_GROUP

CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else "chromium"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TIMEOUT = 120.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",  # Docker's 64 MB /dev/shm is too small for Chromium
    # Offline: no proxy, and no host name resolves but the local services'.
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,2200",
    # Up to 30 s of page time (timers); it stands still while a fetch is pending.
    "--virtual-time-budget=30000",
)


class Operations(HTMLParser):
    """(method, path) of every operation Swagger UI rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._method = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = set((found.get("class") or "").split())
        if tag == "div" and "opblock" in classes:
            methods = {c.removeprefix("opblock-") for c in classes} & METHODS
            self._method = methods.pop() if len(methods) == 1 else ""
        elif classes & {"opblock-summary-path", "opblock-summary-path__deprecated"}:
            self.found.append((self._method, found.get("data-path") or ""))


async def render(url: str, out: Path) -> tuple[str, Path]:
    """Chromium's DOM of `url` once its scripts have run, and a screenshot of it."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            "Chromium is needed for this test and is not installed (no /usr/bin/chromium, "
            "no chromium on PATH): `apt-get install -y chromium` (.ci/run does it in CI)"
        )
    screenshot = out / "api-docs.png"
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout can end all of it
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            pytest.fail(f"Chromium did not finish rendering {url} within {TIMEOUT:.0f}s")
    errors = stderr.decode(errors="replace")[-3000:]
    assert proc.returncode == 0, f"Chromium exited with {proc.returncode}:\n{errors}"
    assert screenshot.read_bytes().startswith(b"\x89PNG"), f"no screenshot:\n{errors}"
    return stdout.decode(), screenshot


async def test_swagger_ui_lists_every_running_service_operation(
    gateway: httpx.AsyncClient, tmp_path: Path
) -> None:
    spec: dict[str, Any] = (await gateway.get("/api/openapi.json")).json()
    up = {name for name, state in spec["x-krika-services"].items() if state == "up"}
    assert {"identity", "catalog"} <= up, spec["x-krika-services"]
    expected = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }
    # Every service the gateway reaches has operations in the spec (so in the page, below).
    services = {SERVICE_OF_GROUP[path.split("/")[3]] for _, path in expected}
    assert services == up

    dom, screenshot = await render(str(gateway.base_url.join("/api/docs")), tmp_path)
    operations = Operations()
    operations.feed(dom)
    rendered = set(operations.found)
    where = f"(screenshot: {screenshot})"
    assert len(rendered) == len(operations.found), f"operations listed twice {where}"
    assert "Failed to load API definition" not in dom, where
    assert expected - rendered == set(), f"not in the rendered page {where}"
    assert rendered - expected == set(), f"not in the spec {where}"
