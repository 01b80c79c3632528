"""The development mail catcher `make up` runs (scripts/krika_dev/mailcatcher.py), and how the
launcher points the services that send mail at it.

Messages go in over real SMTP (aiosmtplib, as notify sends them) and come out of the JSON API and
the web pages; the HTML part is only ever shown in a sandboxed frame. The process itself is run as
the launcher runs it and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from krika_dev.mailcatcher import Mailbox, create_app, start_smtp  # noqa: E402
from krika_dev.plan import App, SetupError, environment, smtp_settings  # noqa: E402

from krika_common.server import free_port, port_open  # noqa: E402

UNSUBSCRIBE = "http://127.0.0.1:8000/api/v1/notifications/unsubscribe?token=t0k3n"
VERIFY = "http://localhost:3000/verify-email?token=abc123"


@dataclass
class Catcher:
    mailbox: Mailbox
    smtp_port: int
    web: httpx.AsyncClient

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(message, hostname="127.0.0.1", port=self.smtp_port, timeout=10)


async def running(mailbox: Mailbox, max_message_bytes: int) -> AsyncIterator[Catcher]:
    port = free_port()
    server = await start_smtp(mailbox, "127.0.0.1", port, max_message_bytes=max_message_bytes)
    transport = httpx.ASGITransport(app=create_app(mailbox))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
            yield Catcher(mailbox, port, web)
    finally:
        server.close()
        await server.wait_closed()


@pytest_asyncio.fixture
async def catcher() -> AsyncIterator[Catcher]:
    async for running_catcher in running(Mailbox(max_messages=3), 64 * 1024):
        yield running_catcher


def welcome(
    to: str = "Ada Lovelace <ada@example.com>", subject: str = "Welcome to Krika, Ada"
) -> EmailMessage:
    """What notify sends: text and HTML alternatives, a one-click unsubscribe header."""
    message = EmailMessage()
    message["From"] = "Krika <no-reply@krika.local>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    message["List-Unsubscribe"] = f"<{UNSUBSCRIBE}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(f"Hello Ada,\n\nPlease verify your address: {VERIFY}.\n")
    message.add_alternative(
        "<!doctype html><html><head><title>Welcome</title></head><body>"
        f'<p>Hello Ada, <a href="{VERIFY}">verify your address</a> & enjoy.</p>'
        "<script>document.title = 'pwned'</script></body></html>",
        subtype="html",
    )
    return message


async def test_a_multipart_message_shows_in_the_json_api(catcher: Catcher) -> None:
    await catcher.send(welcome())

    answer = await catcher.web.get("/api/messages")
    assert answer.status_code == 200, answer.text
    [message] = answer.json()
    assert message["from"] == "Krika <no-reply@krika.local>"
    assert message["to"] == ["ada@example.com"]  # the envelope's recipients
    assert message["subject"] == "Welcome to Krika, Ada"
    assert message["date"] == "2026-11-27T10:00:00+00:00"
    assert message["headers"]["List-Unsubscribe"] == [f"<{UNSUBSCRIBE}>"]
    assert message["headers"]["To"] == ["Ada Lovelace <ada@example.com>"]
    assert message["text"] == f"Hello Ada,\n\nPlease verify your address: {VERIFY}.\n"
    assert f'<a href="{VERIFY}">verify your address</a>' in message["html"]

    one = await catcher.web.get(f"/api/messages/{message['id']}")
    assert one.json() == message
    source = await catcher.web.get(f"/messages/{message['id']}.eml")
    assert source.headers["content-type"] == "message/rfc822"
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in source.content


async def test_the_pages_list_the_message_and_frame_its_html_in_a_sandbox(
    catcher: Catcher,
) -> None:
    await catcher.send(welcome(subject="Welcome <b>& more</b>"))
    [message] = (await catcher.web.get("/api/messages")).json()

    listing = await catcher.web.get("/")
    assert listing.status_code == 200
    assert f'href="/messages/{message["id"]}"' in listing.text
    assert "Welcome &lt;b&gt;&amp; more&lt;/b&gt;" in listing.text
    assert "ada@example.com" in listing.text

    page = await catcher.web.get(f"/messages/{message['id']}")
    assert page.status_code == 200
    # Our pages run no script at all (a srcdoc frame inherits the policy).
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]
    # The headers, the unsubscribe link clickable.
    assert "List-Unsubscribe" in page.text
    assert f'href="{html.escape(UNSUBSCRIBE, quote=True)}"' in page.text
    # The text part, its link clickable (the full stop after it left out).
    assert f'<a href="{html.escape(VERIFY, quote=True)}" target="_blank"' in page.text
    # The HTML part only inside the frame's srcdoc: never markup of this page.
    [frame] = re.findall(r"<iframe\b[^>]*>", page.text)
    sandbox = re.search(r'\ssandbox="([^"]*)"', frame)
    assert sandbox is not None, frame
    flags = sandbox.group(1).split()
    assert "allow-scripts" not in flags, flags
    assert "allow-same-origin" not in flags, flags
    srcdoc = re.search(r'\ssrcdoc="([^"]*)"', frame)
    assert srcdoc is not None, frame
    document = html.unescape(srcdoc.group(1))
    assert f'<a href="{VERIFY}">verify your address</a>' in document
    assert '<base target="_blank">' in document  # its links open in a new tab
    assert "<script>" in document
    assert "<script" not in page.text  # escaped in the srcdoc attribute, nowhere else


async def test_a_message_over_the_size_limit_is_refused_with_552(catcher: Catcher) -> None:
    big = welcome()
    big.add_attachment(os.urandom(100 * 1024), maintype="application", subtype="octet-stream")
    # aiosmtplib declares the size (SIZE=...): refused at MAIL FROM.
    with pytest.raises(aiosmtplib.SMTPResponseException) as declared:
        await catcher.send(big)
    assert declared.value.code == 552

    # A client that does not declare it: refused after DATA.
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=catcher.smtp_port, timeout=10)
    async with client:
        await client.mail("no-reply@krika.local")
        await client.rcpt("ada@example.com")
        with pytest.raises(aiosmtplib.SMTPResponseException) as undeclared:
            await client.data(big.as_bytes())
    assert undeclared.value.code == 552

    assert (await catcher.web.get("/api/messages")).json() == []


async def test_only_the_newest_messages_are_kept_and_they_can_be_forgotten(
    catcher: Catcher,
) -> None:
    for n in range(5):
        await catcher.send(welcome(to=f"user{n}@example.com", subject=f"mail {n}"))

    kept = (await catcher.web.get("/api/messages")).json()
    assert [m["subject"] for m in kept] == ["mail 4", "mail 3", "mail 2"]  # newest first
    first = await catcher.web.get("/api/messages/1")
    assert first.status_code == 404

    deleted = await catcher.web.delete("/api/messages")
    assert deleted.json() == {"deleted": 3}
    assert (await catcher.web.get("/api/messages")).json() == []
    assert "No e-mail yet" in (await catcher.web.get("/")).text


async def test_it_answers_only_to_local_host_names(catcher: Catcher) -> None:
    """A page elsewhere cannot read the mails by pointing its own name at 127.0.0.1."""
    rebound = await catcher.web.get("/api/messages", headers={"Host": "evil.example:1080"})
    assert rebound.status_code == 400
    local = await catcher.web.get("/api/messages", headers={"Host": "localhost:1080"})
    assert local.status_code == 200


async def test_the_process_serves_both_ports_and_stops_on_sigterm() -> None:
    smtp_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    argv = [sys.executable, "-m", "krika_dev.mailcatcher"]
    argv += ["--smtp-port", str(smtp_port), "--http-port", str(http_port)]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while not (
            port_open("127.0.0.1", smtp_port, 0.2) and port_open("127.0.0.1", http_port, 0.2)
        ):
            if proc.returncode is not None:
                pytest.fail(f"the mail catcher exited:\n{(await proc.communicate())[0].decode()}")
            assert time.monotonic() < deadline, "the mail catcher did not listen within 20s"
            await asyncio.sleep(0.1)

        await aiosmtplib.send(welcome(), hostname="127.0.0.1", port=smtp_port, timeout=10)
        # The default limit, 10 MiB.
        huge = welcome()
        huge.add_attachment(b"x" * (11 * 1024 * 1024), maintype="application", subtype="zip")
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await aiosmtplib.send(huge, hostname="127.0.0.1", port=smtp_port, timeout=30)
        assert refused.value.code == 552

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as web:
            assert (await web.get("/healthz")).status_code == 200
            [message] = (await web.get("/api/messages")).json()
        assert message["to"] == ["ada@example.com"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 15))[0].decode()
    assert proc.returncode == 0, output
    assert "#1 to ada@example.com: Welcome to Krika, Ada" in output
    assert not port_open("127.0.0.1", smtp_port, 0.2)
    assert not port_open("127.0.0.1", http_port, 0.2)


# ------------------------------------------------------------------ the launcher's environment

NOTIFY = App(name="notify", port=8007, migrations=True, worker=True, mail=True)
IDENTITY = App(name="identity", port=8001, migrations=True, worker=True)


def test_the_launcher_points_mail_senders_at_the_catcher() -> None:
    extra = {"SMTP_URL": "smtp://127.0.0.1:1025", "MAILCATCHER_URL": "http://127.0.0.1:1080"}
    env = environment([IDENTITY, NOTIFY], extra, base={})
    assert env["NOTIFY_SMTP_HOST"] == "127.0.0.1"
    assert env["NOTIFY_SMTP_PORT"] == "1025"
    assert env["NOTIFY_SMTP_SECURITY"] == "none"
    assert "NOTIFY_SMTP_USERNAME" not in env
    assert not any(key.startswith("IDENTITY_SMTP_") for key in env)


def test_the_developers_smtp_settings_win() -> None:
    extra = {"SMTP_URL": "smtp://127.0.0.1:1025"}
    own = {"SMTP_URL": "smtp+starttls://me%40example.com:p%40ss@mail.example.com"}
    env = environment([NOTIFY], extra, base=own)
    assert (env["NOTIFY_SMTP_HOST"], env["NOTIFY_SMTP_PORT"]) == ("mail.example.com", "587")
    assert env["NOTIFY_SMTP_SECURITY"] == "starttls"
    assert (env["NOTIFY_SMTP_USERNAME"], env["NOTIFY_SMTP_PASSWORD"]) == ("me@example.com", "p@ss")

    env = environment([NOTIFY], extra, base={"NOTIFY_SMTP_HOST": "relay.local"})
    assert (env["NOTIFY_SMTP_HOST"], env["NOTIFY_SMTP_PORT"]) == ("relay.local", "1025")

    assert smtp_settings("smtps://mail.example.com")["PORT"] == "465"
    with pytest.raises(SetupError, match="SMTP_URL"):
        smtp_settings("http://mail.example.com")
