"""The notification templates and their renderer: one kind + its context -> the e-mail's subject,
plain-text and HTML parts, and the in-app notification's title and body.

Each kind has four files in `notify/templates`: `<kind>.subject.j2` (one line), `<kind>.txt.j2`
(the text part, which includes `_footer.txt.j2`), `<kind>.mjml.j2` (extends `_layout.mjml.j2`)
and `<kind>.inapp.j2` (one line). Jinja2 renders them with StrictUndefined (a missing variable
is an error, never an empty string); the MJML is compiled to HTML per message by `mjml2html`
(a Rust port, well under a millisecond a message). Only the MJML environment autoescapes:
subjects, text parts and in-app bodies are plain text, escaped by whoever shows them as HTML.

Templates never build URLs: every link is an absolute URL in the context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, Undefined
from mjml import mjml2html

TEMPLATES = Path(__file__).with_name("templates")
PARTS = ("subject", "txt", "mjml", "inapp")
SUBJECT_MAX = 150

# Minor units are hundredths in every currency Krika takes (as Paystack counts them).
_SYMBOLS = {"NGN": "₦"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str  # one line, no newlines, at most 150 characters
    text: str  # the plain-text part
    html: str  # responsive HTML compiled from MJML
    title: str  # the in-app notification's title (the subject)
    body: str  # the in-app notification's body: one or two sentences, plain text


def money(amount: int, currency: str) -> str:
    """Integer minor units for people: (500000, "NGN") -> ₦5,000.00; (1250, "USD") -> USD 12.50;
    a negative amount gets a leading minus."""
    _defined(amount, currency)
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"money wants integer minor units, not {type(amount).__name__}")
    major, minor = divmod(abs(amount), 100)
    prefix = _SYMBOLS.get(currency, f"{currency} ")
    sign = "-" if amount < 0 else ""
    return f"{sign}{prefix}{major:,}.{minor:02d}"


def format_datetime(value: datetime) -> str:
    """An aware datetime in UTC, for people: 27 Nov 2026, 14:05 UTC."""
    _defined(value)
    if not isinstance(value, datetime):
        raise TypeError(f"datetime wants a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime wants an aware datetime")
    utc = value.astimezone(UTC)
    return f"{utc.day} {_MONTHS[utc.month - 1]} {utc.year}, {utc:%H:%M} UTC"


def _defined(*values: object) -> None:
    # A filter is handed a missing variable as an Undefined: it must fail as a missing variable.
    for value in values:
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()


def fail(message: str) -> NoReturn:
    """For templates: a context they cannot render (an unknown role, say) is an error."""
    raise ValueError(message)


def one_line(value: str) -> str:
    return _SPACES.sub(" ", value).strip()


def _environment(directory: Path, *, autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=autoescape,  # noqa: S701 - off only for the plain-text parts, on purpose
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters["money"] = money
    env.filters["datetime"] = format_datetime
    env.globals["fail"] = fail
    return env


class Templates:
    """The e-mail templates (files in notify/templates), loaded once; Jinja2 with
    StrictUndefined."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or TEMPLATES
        # Markup for the MJML (user strings such as an order title are escaped); plain text for
        # the rest (escaping there would show `&lt;` to the reader).
        html = _environment(directory, autoescape=True)
        text = _environment(directory, autoescape=False)
        names = {p.name for p in directory.iterdir() if p.is_file()}
        self.kinds: frozenset[str] = frozenset(
            name.removesuffix(".subject.j2")
            for name in names
            if name.endswith(".subject.j2")
            and not name.startswith("_")
            and all(name.replace(".subject.j2", f".{part}.j2") in names for part in PARTS)
        )
        # Every template is compiled now: a syntax error stops the service at start-up.
        self._templates: dict[str, dict[str, Template]] = {
            kind: {
                part: (html if part == "mjml" else text).get_template(f"{kind}.{part}.j2")
                for part in PARTS
            }
            for kind in self.kinds
        }
        for shared in sorted(name for name in names if name.startswith("_")):
            html.get_template(shared)
            text.get_template(shared)

    def render(self, kind: str, context: Mapping[str, Any]) -> Rendered:
        """The kind's messages for one recipient; a variable missing from `context` raises
        `jinja2.UndefinedError`, an unknown kind `KeyError`."""
        templates = self._templates[kind]
        subject = one_line(templates["subject"].render(context))
        if len(subject) > SUBJECT_MAX:
            subject = subject[: SUBJECT_MAX - 1].rstrip() + "…"
        if not subject:
            raise ValueError(f"{kind}: the subject is empty")
        text = templates["txt"].render(context)
        text = _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip() for line in text.splitlines()))
        mjml = templates["mjml"].render({**context, "subject": subject})
        html = mjml2html(mjml, disable_comments=True, fonts={})  # no web fonts: nothing remote
        body = one_line(templates["inapp"].render(context))
        return Rendered(
            subject=subject, text=text.strip() + "\n", html=html, title=subject, body=body
        )
