"""The notification templates, rendered for every kind from realistic contexts (no services)."""

from __future__ import annotations

import html
import re
import shutil
import time
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from notify.kinds import KINDS
from notify.render import TEMPLATES, Rendered, Templates, format_datetime, money

SITE = "https://krika.example"
API = "https://api.krika.example"
ORDER_URL = f"{SITE}/orders/5d1c0a6e-4f1b-4c36-9a52-0e1f3b7a9c11"
WALLET_URL = f"{SITE}/wallet"
KYC_URL = f"{SITE}/settings/verification"
SCRIPT = "<script>alert(1)</script>"
AT = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)

KIND_NAMES = frozenset(
    {
        "welcome",
        "email_verification",
        "password_reset",
        "kyc_submitted",
        "kyc_approved",
        "kyc_rejected",
        "order_placed",
        "order_paid",
        "order_delivered",
        "revision_requested",
        "order_completed",
        "order_cancelled",
        "refund_processed",
        "provider_credited",
        "payout_succeeded",
        "payout_failed",
        "review_posted",
        "chat_message",
    }
)
SECURITY = frozenset({"email_verification", "password_reset"})


def base(kind: str, name: str = "Adaeze Okafor") -> dict[str, Any]:
    unsubscribe = (
        None if kind in SECURITY else f"{API}/api/v1/notifications/unsubscribe?token=eyJ.a-b&k=1"
    )
    return {
        "kind": kind,
        "recipient_name": name,
        "public_url": SITE,
        "preferences_url": f"{SITE}/settings/notifications",
        "unsubscribe_url": unsubscribe,
    }


def chat_lines(n: int) -> list[dict[str, Any]]:
    return [
        {
            "message_id": f"m{i}",
            "sender_name": "Tunde Bakare",
            "preview": f"Message number {i}: the logo files are ready",
            "sent_at": AT + timedelta(minutes=i),
        }
        for i in range(1, n + 1)
    ]


order = {"order_title": "A logo for my bakery", "order_url": ORDER_URL}
naira = {"amount": 500000, "currency": "NGN"}

# (kind, the kind's own context, the key of the call-to-action's URL)
SAMPLES: dict[str, tuple[str, dict[str, Any], str]] = {
    "welcome-customer": (
        "welcome",
        {"roles": ["customer"], "dashboard_url": f"{SITE}/"},
        "dashboard_url",
    ),
    "welcome-provider": (
        "welcome",
        {"roles": ["provider"], "dashboard_url": f"{SITE}/"},
        "dashboard_url",
    ),
    "welcome-both": (
        "welcome",
        {"roles": ["customer", "provider"], "dashboard_url": f"{SITE}/"},
        "dashboard_url",
    ),
    "email_verification": (
        "email_verification",
        {"link_url": f"{SITE}/verify-email?token=abc.def_ghi", "expires_at": AT},
        "link_url",
    ),
    "password_reset": (
        "password_reset",
        {"link_url": f"{SITE}/reset-password?token=xyz-123", "expires_at": AT},
        "link_url",
    ),
    "kyc_submitted": ("kyc_submitted", {"kyc_url": KYC_URL}, "kyc_url"),
    "kyc_approved": (
        "kyc_approved",
        {"kyc_url": KYC_URL, "catalog_url": f"{SITE}/services/new"},
        "catalog_url",
    ),
    "kyc_rejected": (
        "kyc_rejected",
        {"reason": "The photo of your ID card is blurred.", "kyc_url": KYC_URL},
        "kyc_url",
    ),
    "order_placed": (
        "order_placed",
        order | naira | {"customer_name": "Chinedu Eze"},
        "order_url",
    ),
    "order_paid-customer": ("order_paid", order | naira | {"role": "customer"}, "order_url"),
    "order_paid-provider": ("order_paid", order | naira | {"role": "provider"}, "order_url"),
    "order_delivered": (
        "order_delivered",
        order | {"provider_name": "Tunde Bakare"},
        "order_url",
    ),
    "revision_requested": (
        "revision_requested",
        order | {"note": "Could the bread in the logo be a little browner?"},
        "order_url",
    ),
    "revision_requested-no-note": ("revision_requested", order | {"note": None}, "order_url"),
    "order_completed-customer": ("order_completed", order | {"role": "customer"}, "order_url"),
    "order_completed-provider": ("order_completed", order | {"role": "provider"}, "order_url"),
    "order_cancelled-refund": (
        "order_cancelled",
        order | {"reason": "I no longer need it.", "cancelled_by": "customer", "refund": True},
        "order_url",
    ),
    "order_cancelled-system": (
        "order_cancelled",
        order | {"reason": None, "cancelled_by": "system", "refund": False},
        "order_url",
    ),
    "refund_processed": ("refund_processed", order | naira, "order_url"),
    "provider_credited": (
        "provider_credited",
        order
        | {"amount": 450000, "commission": 50000, "currency": "NGN", "wallet_url": WALLET_URL},
        "wallet_url",
    ),
    "payout_succeeded": ("payout_succeeded", naira | {"wallet_url": WALLET_URL}, "wallet_url"),
    "payout_failed": (
        "payout_failed",
        naira | {"reason": "The account number is not valid.", "wallet_url": WALLET_URL},
        "wallet_url",
    ),
    "review_posted": (
        "review_posted",
        {
            "order_title": "A logo for my bakery",
            "rating": 4,
            "service_url": f"{SITE}/services/0b8e6c52-3d0e-4d57-8a47-2f9f0c1d2e3f",
        },
        "service_url",
    ),
    "chat_message-one": (
        "chat_message",
        {
            "conversation_url": f"{SITE}/messages/7a1e",
            "count": 1,
            "messages": chat_lines(1),
            "order_title": None,
        },
        "conversation_url",
    ),
    "chat_message-many": (
        "chat_message",
        {
            "conversation_url": f"{SITE}/messages/7a1e",
            "count": 9,
            "messages": chat_lines(7),
            "order_title": "A logo for my bakery",
        },
        "conversation_url",
    ),
}

TAG = re.compile(r"</?[A-Za-z][^>]*>")


def context_of(sample: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    kind, own, _ = SAMPLES[sample]
    return kind, base(kind) | own | overrides


@cache
def templates() -> Templates:
    return Templates()  # loaded once for the module, as the service does


def render(sample: str, **overrides: Any) -> Rendered:
    kind, context = context_of(sample, **overrides)
    return templates().render(kind, context)


def hrefs(page: str) -> set[str]:
    return {html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)}


# --- the set of kinds -----------------------------------------------------------------------------


def test_every_kind_has_its_templates_and_no_other_kind_does() -> None:
    assert Templates().kinds == KIND_NAMES
    assert set(KINDS) == KIND_NAMES  # notify's kinds, each with its four files
    assert {kind for kind, _, _ in SAMPLES.values()} == KIND_NAMES


def test_a_kind_missing_one_of_its_files_is_not_a_kind(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    (directory / "payout_failed.inapp.j2").unlink()

    templates = Templates(directory)

    assert templates.kinds == KIND_NAMES - {"payout_failed"}
    with pytest.raises(KeyError):
        templates.render("payout_failed", context_of("payout_failed")[1])


# --- every kind -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_kind_renders_a_whole_message(sample: str) -> None:
    kind, context = context_of(sample)
    cta = context[SAMPLES[sample][2]]

    rendered = templates().render(kind, context)

    assert rendered.subject.strip() == rendered.subject != ""
    assert "\n" not in rendered.subject
    assert len(rendered.subject) <= 150
    assert rendered.title == rendered.subject
    assert rendered.body
    assert "\n" not in rendered.body
    assert not TAG.search(rendered.body)
    # The call to action: a button in HTML, the same URL on a line of its own in the text.
    assert f"\n{cta}\n" in rendered.text
    assert f'href="{html.escape(cta)}"' in rendered.html
    # Every link the context gives is in both parts (and no other link is in the HTML).
    urls = {v for k, v in context.items() if k.endswith("_url") and v is not None}
    assert [u for u in urls if u not in rendered.text] == []
    assert hrefs(rendered.html) == urls
    # A whole document, compiled: no template syntax or MJML left, nothing loaded from elsewhere.
    assert rendered.html.startswith("<!doctype html>")
    assert '<html lang="en"' in rendered.html
    assert rendered.html.rstrip().endswith("</html>")
    for leftover in ("{{", "}}", "{%", "%}", "{#", "<mj-", "</mj-"):
        assert leftover not in rendered.html
        assert leftover not in rendered.text
    assert not re.search(r"<(img|link|script|iframe)\b|src=|@import|url\(", rendered.html)
    assert f"<title>{html.escape(rendered.subject, quote=False)}</title>" in rendered.html
    # The text part is plain text, greets the recipient and ends with the footer.
    assert not TAG.search(rendered.text)
    assert rendered.text.startswith(f"Hi {context['recipient_name']},\n\n")
    assert rendered.text.endswith("\n")
    assert "\n\n\n" not in rendered.text
    assert context["recipient_name"] in rendered.html


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_footer_links_preferences_and_unsubscribe_unless_security_mail(sample: str) -> None:
    kind, context = context_of(sample)

    rendered = templates().render(kind, context)

    assert context["preferences_url"] in rendered.text
    assert f'href="{html.escape(context["preferences_url"])}"' in rendered.html
    unsubscribe = context["unsubscribe_url"]
    cannot = "Security e-mails cannot be switched off."
    if kind in SECURITY:
        assert unsubscribe is None
        assert "Unsubscribe" not in rendered.text
        assert "Unsubscribe" not in rendered.html
        assert cannot in rendered.text
        assert cannot in rendered.html
    else:
        assert f"Unsubscribe from these e-mails: {unsubscribe}" in rendered.text
        assert re.search(
            rf'href="{re.escape(html.escape(unsubscribe))}"[^>]*>Unsubscribe from these e-mails<',
            rendered.html,
        )
        assert cannot not in rendered.text
        assert cannot not in rendered.html


@pytest.mark.parametrize("sample", SAMPLES)
def test_a_missing_variable_is_an_error_not_an_empty_string(sample: str) -> None:
    kind, context = context_of(sample)
    for key in context.keys() - {"kind"}:  # `kind` is for the caller; no template needs it
        incomplete = {k: v for k, v in context.items() if k != key}
        with pytest.raises(UndefinedError):
            templates().render(kind, incomplete)


def test_the_unsubscribe_link_is_shown_whenever_one_is_given() -> None:
    kind, context = context_of("order_placed", unsubscribe_url=None)
    without = templates().render(kind, context)
    assert "Unsubscribe" not in without.text
    assert "Unsubscribe" not in without.html


# --- user text is escaped in HTML, literal in text ------------------------------------------------


@pytest.mark.parametrize(
    "sample", [s for s, (_, own, _) in SAMPLES.items() if own.get("order_title") is not None]
)
def test_an_order_title_is_escaped_in_html_and_literal_in_text(sample: str) -> None:
    rendered = render(sample, order_title=SCRIPT)

    assert SCRIPT not in rendered.html
    assert "<script" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert SCRIPT in rendered.text
    assert "&lt;" not in rendered.text
    assert "&lt;" not in rendered.subject
    assert SCRIPT in rendered.body


@pytest.mark.parametrize(
    ("sample", "key"),
    [
        ("welcome-customer", "recipient_name"),
        ("kyc_rejected", "reason"),
        ("order_placed", "customer_name"),
        ("order_delivered", "provider_name"),
        ("revision_requested", "note"),
        ("order_cancelled-refund", "reason"),
        ("payout_failed", "reason"),
    ],
)
def test_every_user_string_is_escaped_in_html(sample: str, key: str) -> None:
    rendered = render(sample, **{key: f'Ada "{SCRIPT}" & co'})

    assert "<script" not in rendered.html
    assert "Ada &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34; &amp; co" in rendered.html
    assert f'Ada "{SCRIPT}" & co' in rendered.text


def test_a_chat_preview_is_escaped_in_html() -> None:
    lines = chat_lines(1)
    lines[0]["preview"] = SCRIPT
    rendered = render("chat_message-one", messages=lines)
    assert "<script" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert SCRIPT in rendered.text


def test_a_rejection_reason_is_shown_verbatim() -> None:
    reason = "Your selfie does not match the photo on your NIN slip.\nPlease retake it in daylight."
    rendered = render("kyc_rejected", reason=reason)
    assert "    Your selfie does not match the photo on your NIN slip.\n" in rendered.text
    assert "    Please retake it in daylight." in rendered.text
    assert html.escape(reason) in rendered.html  # kept as written; pre-line shows its line break


# --- the kinds' own rules -------------------------------------------------------------------------


def test_welcome_tells_providers_and_customers_their_next_steps() -> None:
    provider = render("welcome-provider")
    customer = render("welcome-customer")
    both = render("welcome-both")
    assert "Verify your identity (KYC)" in provider.text
    assert "Publish your first service" in provider.text
    assert "browse services" not in provider.text
    assert "browse services by category" in customer.text
    assert "KYC" not in customer.text
    assert "KYC" in both.text
    assert "browse services by category" in both.text


@pytest.mark.parametrize("sample", ["email_verification", "password_reset"])
def test_security_mail_says_when_its_link_expires(sample: str) -> None:
    rendered = render(
        sample, expires_at=datetime(2026, 11, 27, 15, 5, tzinfo=timezone(timedelta(hours=1)))
    )
    assert "expires on 27 Nov 2026, 14:05 UTC" in rendered.text
    assert "27 Nov 2026, 14:05 UTC" in rendered.html
    ignore = {
        "email_verification": "If you did not sign up for Krika, you can safely ignore this",
        "password_reset": "If you did not ask for this, ignore this e-mail: your password is",
    }[sample]
    assert ignore in rendered.text
    assert ignore in rendered.html


def test_order_paid_is_a_receipt_for_the_customer_and_a_go_for_the_provider() -> None:
    customer = render("order_paid-customer")
    provider = render("order_paid-provider")
    assert "Paid:   ₦5,000.00" in customer.text
    assert "escrow" in customer.text
    assert "you accept" in customer.text
    assert "start the work now" in provider.text
    assert "escrow" in provider.text
    assert customer.subject != provider.subject


def test_order_cancelled_says_who_cancelled_and_whether_a_refund_comes() -> None:
    refunded = render("order_cancelled-refund")
    assert "has been cancelled by the customer." in refunded.text
    assert "I no longer need it." in refunded.text
    assert "I no longer need it." in refunded.html
    assert "refund of your payment is on its way" in refunded.text
    assert "refund of your payment is on its way" in refunded.body

    automatic = render("order_cancelled-system")
    assert "has been cancelled automatically." in automatic.text
    assert "refund" not in automatic.text.lower()
    assert "Reason" not in automatic.text

    by_admin = render("order_cancelled-system", cancelled_by="admin")
    assert "has been cancelled by the Krika team." in by_admin.html


@pytest.mark.parametrize(
    ("sample", "overrides"),
    [
        ("order_paid-customer", {"role": "admin"}),
        ("order_completed-provider", {"role": "someone"}),
        ("review_posted", {"rating": 6}),
        ("review_posted", {"rating": 0}),
    ],
)
def test_a_value_outside_the_kind_s_choices_is_an_error(
    sample: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="not"):
        render(sample, **overrides)


def test_an_unknown_canceller_is_an_error() -> None:
    with pytest.raises(UndefinedError):
        render("order_cancelled-system", cancelled_by="robot")


def test_provider_credited_shows_the_commission_taken() -> None:
    rendered = render("provider_credited")
    assert "Order total:              ₦5,000.00" in rendered.text
    assert "Krika commission:         -₦500.00" in rendered.text
    assert "Credited to your wallet:  ₦4,500.00" in rendered.text
    assert "-₦500.00" in rendered.html
    assert "₦4,500.00" in rendered.html


def test_review_posted_shows_the_rating() -> None:
    rendered = render("review_posted")
    assert "★★★★☆  4 out of 5" in rendered.text
    assert "4-star" in rendered.subject


def test_a_chat_digest_shows_the_last_five_messages_and_counts_the_rest() -> None:
    rendered = render("chat_message-many")  # 9 messages, the newest 7 kept
    for i in range(3, 8):
        assert f"Message number {i}:" in rendered.text
        assert f"Message number {i}:" in rendered.html
    for i in (1, 2):
        assert f"Message number {i}:" not in rendered.text + rendered.html
    assert "...and 4 more." in rendered.text
    assert "…and 4 more." in rendered.html
    assert "Tunde Bakare wrote on 27 Nov 2026, 14:08 UTC:" in rendered.text
    assert rendered.subject == "9 new messages on Krika about “A logo for my bakery”"

    one = render("chat_message-one")
    assert one.subject == "1 new message on Krika"
    assert "more." not in one.text


def test_a_long_or_multiline_name_still_makes_a_one_line_subject() -> None:
    welcome = render("welcome-customer", recipient_name="Ada\r\nBcc: x@example.com")
    assert welcome.subject == "Welcome to Krika, Ada Bcc: x@example.com"

    long = render("order_placed", customer_name="Chinedu " * 40)
    assert len(long.subject) == 150
    assert long.subject.endswith("…")
    assert "\n" not in long.subject


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (500000, "NGN", "₦5,000.00"),
        (-500000, "NGN", "-₦5,000.00"),
        (5, "NGN", "₦0.05"),
        (0, "NGN", "₦0.00"),
        (1250, "USD", "USD 12.50"),
        (-1, "USD", "-USD 0.01"),
        (123456789, "GHS", "GHS 1,234,567.89"),
    ],
)
def test_money_formats_minor_units(amount: int, currency: str, shown: str) -> None:
    assert money(amount, currency) == shown


@pytest.mark.parametrize("amount", [12.5, "500", True, None])
def test_money_wants_integer_minor_units(amount: Any) -> None:
    with pytest.raises(TypeError):
        money(amount, "NGN")


def test_money_in_a_message() -> None:
    usd = render("payout_failed", amount=1250, currency="USD")
    assert "USD 12.50" in usd.subject
    assert "USD 12.50" in usd.text
    assert "USD 12.50" in usd.html


def test_datetime_is_shown_in_utc() -> None:
    lagos = timezone(timedelta(hours=1))
    assert format_datetime(datetime(2026, 11, 27, 15, 5, tzinfo=lagos)) == "27 Nov 2026, 14:05 UTC"
    assert format_datetime(datetime(2027, 1, 1, 0, 30, tzinfo=lagos)) == "31 Dec 2026, 23:30 UTC"
    with pytest.raises(ValueError, match="aware"):
        format_datetime(datetime(2026, 11, 27, 14, 5))


# --- speed (measured, not asserted) ---------------------------------------------------------------


def test_render_time_per_message(capsys: pytest.CaptureFixture[str]) -> None:
    """About 0.15 ms a message here (Jinja2 + mjml2html, 25 samples); printed, not asserted."""
    contexts = [context_of(sample) for sample in SAMPLES]
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        for kind, context in contexts:
            templates().render(kind, context)
    per_message = (time.perf_counter() - started) / (rounds * len(contexts))
    started = time.perf_counter()
    Templates()
    loading = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nnotify templates: {per_message * 1000:.3f} ms per message "
            f"({rounds * len(contexts)} renders), loading all: {loading * 1000:.1f} ms"
        )
