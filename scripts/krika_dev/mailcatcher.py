"""The development mail catcher: every e-mail sent in development, readable in a browser.

`make up` runs it (a tier-0 child, like nx-27017) whenever a service sends mail and no SMTP_URL
names a server of the developer's; notify and its worker are pointed at it. An SMTP server
(aiosmtpd) accepts every message for any recipient and keeps the newest ones in memory: nothing is
relayed, nothing is written to disk, a restart forgets them. A web UI and a JSON API show them:

    GET    /                   the list, newest first (time, from, to, subject); refreshes itself
    GET    /messages/{id}      headers (List-Unsubscribe...), the text part, the HTML part
    GET    /messages/{id}.eml  the message as received
    GET    /api/messages       JSON, newest first: [{id, from, to, subject, date, received_at,
                               headers, text, html, size}]; `to` is the envelope's recipients
    GET    /api/messages/{id}
    DELETE /api/messages       forget them all
    GET    /healthz

The HTML part is never rendered in our own origin: it goes into `<iframe sandbox srcdoc=...>`
without allow-scripts or allow-same-origin (an opaque origin: no scripts, no forms, no access to
this page), and its links open in a new tab (allow-popups). Both servers listen on 127.0.0.1 only,
and the web UI answers only to the Host names localhost and 127.0.0.1 (no DNS rebinding: a mail
holds one-time links). A message over `--max-message-bytes` is refused with 552; beyond
`--max-messages` (or `--max-total-bytes` in all) the oldest are forgotten.

    cd scripts && python -m krika_dev.mailcatcher [--smtp-port 1025] [--http-port 1080]

It needs only the workspace's venv (aiosmtpd, FastAPI, uvicorn): no Node, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import re
import signal
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

log = logging.getLogger("mailcatcher")

SMTP_PORT = 1025
HTTP_PORT = 1080
MAX_MESSAGES = 500
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024

# Our pages: no scripts at all, inline styles, images from anywhere (a mail's own). A srcdoc
# frame inherits this policy, so the mail's HTML gets the same limits.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
    "frame-ancestors 'none'; form-action 'none'"
)
# Links in a mail open in a new tab, outside the sandbox; nothing else is allowed.
SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
_URL = re.compile(r"https?://[^\s<>\"'`]+")
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


@dataclass(frozen=True)
class Caught:
    """One message as it arrived, and what the UI shows of it."""

    id: int
    received_at: datetime
    mail_from: str  # the envelope's
    rcpt_tos: tuple[str, ...]  # the envelope's: who it was delivered to
    raw: bytes
    sender: str  # the From header (the envelope's when there is none)
    subject: str
    date: datetime | None  # the Date header
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None

    def as_json(self) -> dict[str, Any]:
        headers: dict[str, list[str]] = {}
        for name, value in self.headers:
            headers.setdefault(name, []).append(value)
        return {
            "id": self.id,
            "from": self.sender,
            "to": list(self.rcpt_tos),
            "subject": self.subject,
            "date": (self.date or self.received_at).isoformat(),
            "received_at": self.received_at.isoformat(),
            "headers": headers,
            "text": self.text,
            "html": self.html,
            "size": len(self.raw),
        }


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    """The body of the message's text/<subtype> part (not an attachment), decoded."""
    part = message.get_body(preferencelist=(subtype,))
    if not isinstance(part, EmailMessage) or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def _headers(message: EmailMessage) -> Iterator[tuple[str, str]]:
    """Every header in order (repeated ones too), RFC 2047 words decoded, unfolded."""
    for name, value in message.raw_items():
        try:
            decoded = str(policy.default.header_fetch_parse(name, value))
        except Exception:  # a header the parser cannot make sense of: shown as it came
            decoded = str(value)
        yield name, " ".join(decoded.split())


def parse(id: int, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> Caught:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    date: datetime | None = None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        if message["Date"]:
            date = parsedate_to_datetime(str(message["Date"]))
    return Caught(
        id=id,
        received_at=datetime.now(UTC),
        mail_from=mail_from,
        rcpt_tos=tuple(rcpt_tos),
        raw=raw,
        sender=str(message["From"] or mail_from),
        subject=str(message["Subject"] or ""),
        date=date,
        headers=tuple(_headers(message)),
        text=_part_text(message, "plain"),
        html=_part_text(message, "html"),
    )


@dataclass
class Mailbox:
    """The newest messages, at most `max_messages` and `max_total_bytes` of them together."""

    max_messages: int = MAX_MESSAGES
    max_total_bytes: int = MAX_TOTAL_BYTES
    _messages: deque[Caught] = field(default_factory=deque)
    _next_id: int = 1
    _bytes: int = 0

    def add(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> Caught:
        caught = parse(self._next_id, mail_from, rcpt_tos, raw)
        self._next_id += 1
        self._messages.append(caught)
        self._bytes += len(raw)
        while len(self._messages) > self.max_messages or (
            self._bytes > self.max_total_bytes and len(self._messages) > 1
        ):
            self._bytes -= len(self._messages.popleft().raw)
        return caught

    def newest_first(self) -> list[Caught]:
        return list(reversed(self._messages))

    def get(self, id: int) -> Caught | None:
        return next((m for m in self._messages if m.id == id), None)

    def clear(self) -> int:
        count = len(self._messages)
        self._messages.clear()
        self._bytes = 0
        return count


class CatchAll:
    """aiosmtpd's handler: every recipient is accepted, every message kept in the mailbox."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        caught = self.mailbox.add(envelope.mail_from or "", envelope.rcpt_tos, raw)
        log.info(
            "#%d to %s: %s (%d bytes)",
            caught.id,
            ", ".join(caught.rcpt_tos),
            caught.subject,
            len(raw),
        )
        return "250 OK: caught (development mail catcher, nothing is relayed)"


async def start_smtp(
    mailbox: Mailbox,
    host: str = "127.0.0.1",
    port: int = SMTP_PORT,
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> asyncio.Server:
    """The SMTP server on this event loop (the web UI's), so the mailbox needs no lock."""
    handler = CatchAll(mailbox)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            hostname="krika-mailcatcher",
            ident="Krika development mail catcher",
        ),
        host=host,
        port=port,
    )


# ------------------------------------------------------------------ the web UI

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2433; }
h1 { font-size: 1.25rem; } h1 a { color: inherit; text-decoration: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ec;
         vertical-align: top; }
tr:hover td { background: #f5f7fa; }
td.when { white-space: nowrap; color: #5b6475; }
.headers th { white-space: nowrap; width: 1%; color: #5b6475; font-weight: 500; }
.headers td { word-break: break-all; }
pre { white-space: pre-wrap; word-break: break-word; background: #f5f7fa; padding: 1rem; }
iframe { width: 100%; height: 75vh; border: 1px solid #e3e6ec; resize: vertical; }
.muted { color: #5b6475; }
"""


def _page(title: str, body: str, *, refresh: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1><a href="/">Krika mail catcher</a></h1>{body}</body></html>'
    )
    return HTMLResponse(
        document,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def linkify(text: str) -> str:
    """Escaped text whose http(s) URLs are links (opening in a new tab)."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?)]}")
        out.append(html.escape(text[last : match.start()]))
        href = html.escape(url, quote=True)
        out.append(f'<a href="{href}" target="_blank" rel="noopener noreferrer">{href}</a>')
        last = match.start() + len(url)
    out.append(html.escape(text[last:]))
    return "".join(out)


def framed(document: str) -> str:
    """The mail's HTML as a sandboxed frame's srcdoc; its links open in a new tab."""
    base = '<base target="_blank">'
    head = _HEAD.search(document)
    document = (
        f"{document[: head.end()]}{base}{document[head.end() :]}" if head else base + document
    )
    return (
        f'<iframe sandbox="{SANDBOX}" referrerpolicy="no-referrer" title="HTML part"'
        f' srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )


def _when(caught: Caught) -> str:
    return caught.received_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def list_page(mailbox: Mailbox) -> HTMLResponse:
    messages = mailbox.newest_first()
    rows = "".join(
        f'<tr><td class="when">{_when(m)}</td><td>{html.escape(m.sender)}</td>'
        f"<td>{html.escape(', '.join(m.rcpt_tos))}</td>"
        f'<td><a href="/messages/{m.id}">{html.escape(m.subject or "(no subject)")}</a></td></tr>'
        for m in messages
    )
    table = (
        "<table><thead><tr><th>received</th><th>from</th><th>to</th><th>subject</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if messages
        else "<p>No e-mail yet.</p>"
    )
    note = (
        f'<p class="muted">{len(messages)} message(s), newest first; this page refreshes every'
        " 5 s. JSON: <code>GET /api/messages</code>; forget them all:"
        " <code>DELETE /api/messages</code>.</p>"
    )
    return _page("Krika mail catcher", note + table, refresh=5)


def message_page(caught: Caught) -> HTMLResponse:
    headers = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{linkify(value)}</td></tr>"
        for name, value in caught.headers
    )
    envelope = (
        f"<tr><th>envelope</th><td>from {html.escape(caught.mail_from or '<>')} to"
        f" {html.escape(', '.join(caught.rcpt_tos))}, received {_when(caught)},"
        f" {len(caught.raw)} bytes (<a href='/messages/{caught.id}.eml'>source</a>)</td></tr>"
    )
    parts = [f'<table class="headers">{envelope}{headers}</table>']
    parts.append("<h2>HTML part</h2>")
    parts.append(framed(caught.html) if caught.html is not None else "<p>None.</p>")
    parts.append("<h2>Text part</h2>")
    parts.append(
        f"<pre>{linkify(caught.text)}</pre>" if caught.text is not None else "<p>None.</p>"
    )
    return _page(caught.subject or "(no subject)", "".join(parts))


def create_app(mailbox: Mailbox) -> FastAPI:
    app = FastAPI(title="Krika mail catcher", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])

    def found(id: int) -> Caught:
        caught = mailbox.get(id)
        if caught is None:
            raise HTTPException(404, f"no message {id} (forgotten, or never caught)")
        return caught

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return list_page(mailbox)

    @app.get("/messages/{id}.eml")
    async def source(id: int) -> Response:
        return Response(
            found(id).raw,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="message-{id}.eml"'},
        )

    @app.get("/messages/{id}", response_class=HTMLResponse)
    async def message(id: int) -> HTMLResponse:
        return message_page(found(id))

    @app.get("/api/messages")
    async def messages() -> JSONResponse:
        return JSONResponse([m.as_json() for m in mailbox.newest_first()])

    @app.get("/api/messages/{id}")
    async def one(id: int) -> JSONResponse:
        return JSONResponse(found(id).as_json())

    @app.delete("/api/messages")
    async def forget() -> dict[str, int]:
        return {"deleted": mailbox.clear()}

    return app


# ------------------------------------------------------------------ the process


class _Server(uvicorn.Server):
    # run() installs its own SIGINT/SIGTERM handlers (a clean stop, exit 0); uvicorn's would
    # raise the signal again once it has stopped.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(
    *,
    host: str = "127.0.0.1",
    smtp_port: int = SMTP_PORT,
    http_port: int = HTTP_PORT,
    max_messages: int = MAX_MESSAGES,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> None:
    """Both servers until SIGINT or SIGTERM."""
    mailbox = Mailbox(max_messages=max_messages, max_total_bytes=max_total_bytes)
    smtp = await start_smtp(mailbox, host, smtp_port, max_message_bytes=max_message_bytes)
    config = uvicorn.Config(
        create_app(mailbox),
        host=host,
        port=http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    log.info(
        "SMTP on %s:%d, web UI on http://%s:%d (%d messages, %d MiB each at most)",
        host,
        smtp_port,
        host,
        http_port,
        max_messages,
        max_message_bytes // (1024 * 1024),
    )
    try:
        await server.serve()
    finally:
        smtp.close()
        await smtp.wait_closed()
    if not server.started:
        raise OSError(f"the web UI could not listen on {host}:{http_port}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m krika_dev.mailcatcher", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    parser.add_argument("--max-messages", type=int, default=MAX_MESSAGES)
    parser.add_argument("--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES)
    parser.add_argument("--max-total-bytes", type=int, default=MAX_TOTAL_BYTES)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: every SMTP command
    try:
        asyncio.run(
            run(
                host=args.host,
                smtp_port=args.smtp_port,
                http_port=args.http_port,
                max_messages=args.max_messages,
                max_message_bytes=args.max_message_bytes,
                max_total_bytes=args.max_total_bytes,
            )
        )
    except OSError as exc:  # a port taken
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
