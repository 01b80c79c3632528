"""`make up` end to end: the one developer command brings up a working system and Ctrl-C ends it.

Runs the real `make up` (sync, infra check, secrets, databases, migrations, nx-27017, the mail
catcher, every process), goes through the gateway as a frontend would (register, log in, read
/users/me, the banks, the wallet, chat's conversations; a chat message reaching the other user's
Socket.IO connection), reads the welcome and verification e-mails in the mail catcher's JSON API
(and opens the verification link through the gateway), then interrupts it like a developer
pressing Ctrl-C and checks that nothing is left listening, the Mongo-wire server and the mail
catcher included.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

import httpx
import pytest
import socketio

from krika_common.server import port_open

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "http://127.0.0.1:8000"
PORTS = {
    8000: "gateway",
    8001: "identity",
    8002: "catalog",
    8003: "orders",
    8004: "payments",
    8005: "ledger",
    8006: "chat",
    8007: "notify",
    8010: "paystack-sandbox",
    9000: "gateway (operations)",
    9001: "identity-worker",
    9002: "catalog-worker",
    9003: "orders-worker",
    9004: "payments-worker",
    9005: "ledger-worker",
    9006: "chat-worker",
    9007: "notify-worker",
}
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
# chat learns of a new user from identity's event (chat-worker); until then it is unknown there.
CHAT_LEARNS_USERS_WITHIN = 30.0
REALTIME_TIMEOUT = 10.0
# The launcher's line naming the Mongo-wire server it started (27017, or a free port).
MONGO_STARTED = re.compile(r"MongoDB\s+mongodb://127\.0\.0\.1:(\d+) \(nx-27017")
# ... and the mail catcher's: its web UI (1080) and SMTP (1025) ports, or free ones.
MAIL_STARTED = re.compile(
    r"Mail\s+(http://127\.0\.0\.1:(\d+)) \(mail catcher, SMTP on 127\.0\.0\.1:(\d+)\)"
)
# identity-worker relays the user's events, notify-worker renders and sends the e-mails.
MAIL_WITHIN = 20.0


def listening(port: int) -> bool:
    return port_open("127.0.0.1", port, timeout=0.3)


def read_log(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def tail(log: IO[bytes], lines: int = 60) -> str:
    return "\n".join(read_log(log).splitlines()[-lines:])


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


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sign_up(api: httpx.Client, full_name: str) -> Account:
    """A new customer, registered and logged in through the gateway."""
    email = f"make-up-{uuid.uuid4().hex[:12]}@example.com"
    password = f"Make-Up-{uuid.uuid4().hex[:8]}"
    registered = api.post(
        "/auth/register",
        json={"email": email, "password": password, "full_name": full_name, "role": "customer"},
    )
    assert registered.status_code == 201, registered.text

    login = api.post("/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]

    me = api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    return Account(id=str(me.json()["id"]), email=email, token=token)


async def message_reaches_socket(reader: Account, writer: Account) -> None:
    """`reader` connects to Socket.IO through the gateway (WebSocket, token in the query, as a
    browser does); `writer` opens a conversation with them and sends a message over REST; the
    message arrives on the reader's connection."""
    received: asyncio.Queue[Any] = asyncio.Queue()
    sio = socketio.AsyncClient(reconnection=False)

    async def on_message(data: Any) -> None:
        await received.put(data)

    sio.on("message", on_message)
    await sio.connect(
        f"{GATEWAY}/socket.io/?access_token={reader.token}",
        transports=["websocket"],
        socketio_path="socket.io",
        wait_timeout=REALTIME_TIMEOUT,
    )
    try:
        assert sio.connected
        async with httpx.AsyncClient(
            base_url=f"{GATEWAY}/api/v1", headers=writer.auth, timeout=15.0, trust_env=False
        ) as api:
            deadline = time.monotonic() + CHAT_LEARNS_USERS_WITHIN
            while True:
                opened = await api.post(
                    "/chat/conversations", json={"participant_ids": [reader.id]}
                )
                unknown = opened.status_code == 422 and "unknown_participant" in opened.text
                if not unknown or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert opened.status_code == 201, (
                f"chat did not learn of {reader.id} from identity within"
                f" {CHAT_LEARNS_USERS_WITHIN:.0f}s (chat-worker): {opened.text}"
            )
            conversation_id = opened.json()["id"]
            sent = await api.post(
                f"/chat/conversations/{conversation_id}/messages",
                json={"body": "Hello from make up", "client_id": uuid.uuid4().hex},
            )
            assert sent.status_code == 201, sent.text
        data = await asyncio.wait_for(received.get(), REALTIME_TIMEOUT)
        assert data["id"] == sent.json()["id"], data
        assert data["conversation_id"] == conversation_id, data
        assert data["sender_id"] == writer.id, data
        assert data["body"] == "Hello from make up", data
    finally:
        await sio.disconnect()


def mail_to(catcher: str, address: str, kinds: set[str]) -> dict[str, dict[str, Any]]:
    """The mails of these kinds (notify's X-Krika-Kind) to `address` in the mail catcher's JSON
    API, once they are all there or MAIL_WITHIN has passed."""
    deadline = time.monotonic() + MAIL_WITHIN
    with httpx.Client(base_url=catcher, timeout=5.0, trust_env=False) as client:
        while True:
            answer = client.get("/api/messages")
            assert answer.status_code == 200, answer.text
            found = {
                kind: message
                for message in answer.json()
                if address in message["to"]
                for kind in message["headers"].get("X-Krika-Kind", [])
            }
            if kinds <= set(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.25)


def mails_reach_the_catcher(api: httpx.Client, log: IO[bytes], account: Account) -> None:
    """notify's welcome and verification mails to a new user are in the mail catcher's JSON API,
    each with a subject, a text and an HTML part; the verification link (sealed by identity,
    opened by notify: the launcher gives both the same key) verifies the address."""
    mail = MAIL_STARTED.search(read_log(log))
    if mail is None:  # only when SMTP_URL names a server of the developer's
        assert "SMTP_URL" in os.environ, tail(log)
        return
    wanted = {"welcome", "email_verification"}
    started = time.monotonic()
    mails = mail_to(mail.group(1), account.email, wanted)
    assert wanted <= set(mails), (
        f"no welcome and verification e-mails to {account.email} in the mail catcher"
        f" ({mail.group(1)}) within {MAIL_WITHIN:.0f}s: {sorted(mails)}\n{tail(log)}"
    )
    print(f"e-mails in the mail catcher {time.monotonic() - started:.1f}s after sign-up")
    for kind, message in mails.items():
        assert message["subject"].strip(), (kind, message)
        assert message["to"] == [account.email], (kind, message)
        assert (message["text"] or "").strip(), (kind, message)
        assert "<html" in (message["html"] or "").lower(), (kind, message)
    text = mails["email_verification"]["text"]
    link = re.search(r"https?://\S+/verify-email\?token=(\S+)", text)
    assert link is not None, text
    verified = api.post("/auth/verify-email", json={"token": unquote(link.group(1))})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True


def test_make_up_serves_the_account_flow_and_stops_on_ctrl_c(
    make_up: subprocess.Popen[bytes], make_up_log: IO[bytes]
) -> None:
    wait_for_gateway(make_up, make_up_log)

    with httpx.Client(base_url=f"{GATEWAY}/api/v1", timeout=15.0, trust_env=False) as api:
        ada = sign_up(api, "Ada Up")
        token = ada.token

        # payments answers through the gateway, from the Paystack sandbox beside it (same key).
        banks = api.get("/payments/banks", headers={"Authorization": f"Bearer {token}"})
        assert banks.status_code == 200, banks.text
        assert {"code": "058", "name": "Guaranty Trust Bank"} in banks.json()["items"]

        # ledger answers a new wallet with zeros for the platform currency.
        wallet = api.get("/wallet", headers={"Authorization": f"Bearer {token}"})
        assert wallet.status_code == 200, wallet.text
        assert wallet.json()["balances"][0]["currency"] == "NGN"

        # chat answers through the gateway, from its MongoDB (nx-27017 unless MONGODB_URL).
        conversations = api.get("/chat/conversations", headers=ada.auth)
        assert conversations.status_code == 200, conversations.text
        assert conversations.json()["items"] == [], conversations.text

        bola = sign_up(api, "Bola Up")

        # Every e-mail sent in development is in the mail catcher.
        mails_reach_the_catcher(api, make_up_log, ada)

    # The realtime path: chat-worker (identity's events), chat's REST and its Socket.IO hub (the
    # Redis manager), the gateway's WebSocket proxy.
    asyncio.run(message_reaches_socket(reader=ada, writer=bola))

    mongo = MONGO_STARTED.search(read_log(make_up_log))
    ports = dict(PORTS)
    if mongo is not None:
        ports[int(mongo.group(1))] = "nx-27017"
    else:  # only when MONGODB_URL names a server of the developer's
        assert "MONGODB_URL" in os.environ, tail(make_up_log)
    mail = MAIL_STARTED.search(read_log(make_up_log))
    if mail is not None:
        ports[int(mail.group(2))] = "mail catcher (web UI)"
        ports[int(mail.group(3))] = "mail catcher (SMTP)"

    # Ctrl-C in a terminal: SIGINT to the foreground process group.
    os.killpg(make_up.pid, signal.SIGINT)
    try:
        make_up.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`make up` still running {STOP_TIMEOUT:.0f}s after Ctrl-C:\n{tail(make_up_log)}"
        )

    deadline = time.monotonic() + 5
    left = list(ports)
    while left and time.monotonic() < deadline:
        left = [port for port in ports if listening(port)]
        time.sleep(0.2)
    still = [f"{port} ({ports[port]})" for port in left]
    assert not left, f"still listening after Ctrl-C: {still}\n{tail(make_up_log)}"
    output = tail(make_up_log, 400)
    assert "stopped" in output, output
    assert "SIGKILL" not in output, output
