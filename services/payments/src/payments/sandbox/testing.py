"""The sandbox as a real process for tests (this suite's and any other's).

    with running_sandbox() as sandbox:
        client = PaystackClient(base_url=sandbox.base_url, secret_key=sandbox.secret_key)
        ...
        await sandbox.pay(authorization_url)        # the checkout form, as a browser posts it

`running_sandbox` starts `python -m payments.sandbox` on a free port with a temporary SQLite
database (unless one is given) and test-friendly timings (short settle and retry delays),
waits for /healthz and stops it at the end. `Sandbox` drives its /_sandbox controls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from krika_common.server import free_port

from .config import DEFAULT_SECRET_KEY

# Timings that keep tests quick; any of them can be overridden through **settings.
TEST_SETTINGS: dict[str, Any] = {
    "settle_after": 0.2,
    "webhook_timeout": 2.0,
    "webhook_retry_base": 0.1,
    "webhook_retry_max_delay": 1.0,
    "timeout_seconds": 2.0,
}
STARTUP_DEADLINE = 30.0
STOP_DEADLINE = 10.0


class _Form(HTMLParser):
    """The first form of a page: its action, method, fields and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.found = False
        self.inside = False
        self.action = ""
        self.method = "get"
        self.fields: list[tuple[str, str]] = []
        self.buttons: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self.found:
            self.found = self.inside = True
            self.action = attributes.get("action", "")
            self.method = attributes.get("method", "get").lower()
        elif not self.inside or "name" not in attributes:
            return
        elif tag == "button" and attributes.get("type", "submit") == "submit":
            self.buttons.append((attributes["name"], attributes.get("value", "")))
        elif tag == "input":
            kind = attributes.get("type", "text").lower()
            if kind == "submit":
                self.buttons.append((attributes["name"], attributes.get("value", "")))
            elif kind not in ("button", "reset", "image", "file") and (
                kind not in ("checkbox", "radio") or "checked" in attributes
            ):
                self.fields.append((attributes["name"], attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


class Sandbox:
    """A running sandbox process and its controls."""

    def __init__(self, port: int, database_url: str, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.secret_key = env.get("PAYSTACK_SANDBOX_SECRET_KEY", DEFAULT_SECRET_KEY)
        self.database_url = database_url
        self._env = env
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "payments.sandbox"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the sandbox exited at startup:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sandbox did not answer /healthz in time:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port and database."""
        self.stop()
        self.start()

    def log(self) -> str:
        """What the process wrote (its last 20 000 characters)."""
        try:
            return self._log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ controls

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client on the sandbox with the secret key."""
        headers = {"authorization": f"Bearer {self.secret_key}", **kwargs.pop("headers", {})}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, **kwargs)

    async def _control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.client(timeout=10.0) as client:
            response = await client.request(method, f"/_sandbox{path}", **kwargs)
        response.raise_for_status()
        return response

    async def rule(self, **rule: Any) -> None:
        """Add a rule (see payments.sandbox.rules), e.g. `rule(kind="transfer", answer="otp")`."""
        await self._control("POST", "/rules", json=rule)

    async def clear_rules(self) -> None:
        await self._control("DELETE", "/rules")

    async def set_webhook_url(self, url: str | None) -> None:
        await self._control("PUT", "/config", json={"webhook_url": url})

    async def deliveries(
        self, reference: str | None = None, event: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("reference", reference), ("event", event)) if v is not None}
        data: list[dict[str, Any]] = (
            await self._control("GET", "/webhooks", params=params)
        ).json()["data"]
        return data

    async def redeliver(self, delivery_id: int | str) -> None:
        await self._control("POST", f"/webhooks/{delivery_id}/redeliver")

    async def balance(self) -> int:
        return int((await self._control("GET", "/balance")).json()["amount"])

    async def set_balance(self, amount: int) -> None:
        await self._control("PUT", "/balance", json={"amount": amount})

    async def pay(self, authorization_url: str, outcome: str = "success") -> httpx.Response:
        """Open the checkout page and submit its form with the button for `outcome`
        (`success`: Pay, `failed`: Decline), as a browser does. Redirects are not followed:
        the answer is the form's (303 to the callback URL, or a page)."""
        async with httpx.AsyncClient(timeout=10.0) as browser:
            page = await browser.get(authorization_url)
            page.raise_for_status()
            form = _Form()
            form.feed(page.text)
            if not form.found:
                raise AssertionError(f"no form on the checkout page:\n{page.text}")
            button = next((b for b in form.buttons if b[1] == outcome), None)
            if button is None:
                raise AssertionError(f"no button for {outcome!r} in the form: {form.buttons}")
            target = urljoin(str(page.url), form.action or str(page.url))
            return await browser.request(
                form.method.upper(), target, data=dict([*form.fields, button])
            )


def _env_name(name: str) -> str:
    return f"PAYSTACK_SANDBOX_{name.upper()}"


@contextlib.contextmanager
def running_sandbox(
    *, database_url: str | None = None, env: Mapping[str, str] | None = None, **settings: Any
) -> Iterator[Sandbox]:
    """A sandbox process on a free port (a temporary SQLite database unless `database_url`),
    with TEST_SETTINGS and `settings` (SandboxSettings fields) as PAYSTACK_SANDBOX_* variables
    and `env` added to the environment; stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="paystack-sandbox-") as folder:
        port = free_port()
        url = database_url or f"sqlite+aiosqlite:///{folder}/sandbox.db"
        variables = {k: v for k, v in os.environ.items() if not k.startswith("PAYSTACK_SANDBOX_")}
        values = {**TEST_SETTINGS, **settings}
        variables |= {_env_name(k): str(v) for k, v in values.items() if v is not None}
        variables |= {
            _env_name("database_url"): url,
            _env_name("host"): "127.0.0.1",
            _env_name("port"): str(port),
        }
        variables.setdefault(_env_name("public_url"), f"http://127.0.0.1:{port}")
        variables |= dict(env or {})
        sandbox = Sandbox(port, url, variables, Path(folder) / "sandbox.log")
        sandbox.start()
        try:
            yield sandbox
        finally:
            sandbox.stop()
