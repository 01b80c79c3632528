"""`make up` end to end: the one developer command brings up a working system and Ctrl-C ends it.

Runs the real `make up` (sync, infra check, secrets, databases, migrations, every process), goes
through the gateway as a frontend would (register, log in, read /users/me), then interrupts it
like a developer pressing Ctrl-C and checks that nothing is left listening.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from krika_common.server import port_open

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "http://127.0.0.1:8000"
PORTS = {
    8000: "gateway",
    8001: "identity",
    8004: "payments",
    8005: "ledger",
    8010: "paystack-sandbox",
    9000: "gateway (operations)",
    9001: "identity-worker",
    9004: "payments-worker",
    9005: "ledger-worker",
}
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


def listening(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.3)


def tail(log: IO[bytes], lines: int = 60) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def make_up_log() -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile() as log:
        yield log


@pytest.fixture
def make_up(make_up_log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`make up` in the repository root, in a process group of its own (as in a terminal)."""
    busy = [f"{port} ({name})" for port, name in PORTS.items() if listening(port)]
    if busy:
        pytest.fail(
            f"port(s) {', '.join(busy)} already in use before the test started: stop the "
            "running `make up` (or whatever holds them) and run the test again"
        )
    # A clean run: no sub-make flags from an enclosing `make test`, no colour codes in the log.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["NO_COLOR"] = "1"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "up"],  # noqa: S607 - make from PATH, as a developer runs it
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=make_up_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # the test failed before its own Ctrl-C: do not leak a system
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_gateway(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                code = proc.returncode
                pytest.fail(f"`make up` exited ({code}) before the gateway answered:\n{tail(log)}")
            try:
                if client.get(f"{GATEWAY}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    pytest.fail(f"no answer from {GATEWAY}/healthz within {START_TIMEOUT:.0f}s:\n{tail(log)}")


def test_make_up_serves_the_account_flow_and_stops_on_ctrl_c(
    make_up: subprocess.Popen[bytes], make_up_log: IO[bytes]
) -> None:
    wait_for_gateway(make_up, make_up_log)

    email = f"make-up-{uuid.uuid4().hex[:12]}@example.com"
    password = f"Make-Up-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=f"{GATEWAY}/api/v1", timeout=15.0, trust_env=False) as api:
        registered = api.post(
            "/auth/register",
            json={"email": email, "password": password, "full_name": "Ada Up", "role": "customer"},
        )
        assert registered.status_code == 201, registered.text

        login = api.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]

        me = api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email

        # payments answers through the gateway, from the Paystack sandbox beside it (same key).
        banks = api.get("/payments/banks", headers={"Authorization": f"Bearer {token}"})
        assert banks.status_code == 200, banks.text
        assert {"code": "058", "name": "Guaranty Trust Bank"} in banks.json()["items"]

        # ledger answers a new wallet with zeros for the platform currency.
        wallet = api.get("/wallet", headers={"Authorization": f"Bearer {token}"})
        assert wallet.status_code == 200, wallet.text
        assert wallet.json()["balances"][0]["currency"] == "NGN"

    # Ctrl-C in a terminal: SIGINT to the foreground process group.
    os.killpg(make_up.pid, signal.SIGINT)
    try:
        make_up.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`make up` still running {STOP_TIMEOUT:.0f}s after Ctrl-C:\n{tail(make_up_log)}"
        )

    deadline = time.monotonic() + 5
    left = list(PORTS)
    while left and time.monotonic() < deadline:
        left = [port for port in PORTS if listening(port)]
        time.sleep(0.2)
    assert not left, f"still listening after Ctrl-C: {left}\n{tail(make_up_log)}"
    output = tail(make_up_log, 400)
    assert "stopped" in output, output
    assert "SIGKILL" not in output, output
