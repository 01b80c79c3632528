"""An SMTP capture server for tests: a real SMTP peer (aiosmtpd, in a thread of its own) that
keeps what it accepts, and can answer DATA with the replies a test queues first (`421 ...`, a
temporary failure; `550 ...`, a permanent one) before accepting again.

    with capturing_smtp() as smtp:   # smtp.host, smtp.port
        ...
        [mail] = smtp.to("ada@example.com")
        mail.subject, mail.text, mail.html, mail.message["List-Unsubscribe"]
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from krika_common.server import free_port


@dataclass
class Captured:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def kind(self) -> str:
        """notify's `X-Krika-Kind` header."""
        return str(self.message["X-Krika-Kind"])

    def part(self, subtype: str) -> str:
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None, f"no text/{subtype} part"
        return str(found.get_content())

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


@dataclass
class CaptureServer:
    host: str
    port: int
    answers: list[str] = field(default_factory=list)
    _messages: list[Captured] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.answers:
                return self.answers.pop(0)
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        captured = Captured(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], parsed)
        with self._lock:
            self._messages.append(captured)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Captured]:
        with self._lock:
            return list(self._messages)

    def to(self, address: str) -> list[Captured]:
        return [m for m in self.messages if address in m.recipients]

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self.answers.clear()


@contextlib.contextmanager
def capturing_smtp(host: str = "127.0.0.1") -> Iterator[CaptureServer]:
    capture = CaptureServer(host, free_port())
    controller = Controller(capture, hostname=host, port=capture.port)
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()
