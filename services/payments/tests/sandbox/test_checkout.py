"""The checkout page at authorization_url: one form, Pay or Decline, once."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx

from krika_common.testing import eventually
from payments.sandbox.checkout import format_amount
from payments.sandbox.objects import local_card_fee
from payments.sandbox.testing import Sandbox

from .factories import initialize, reference
from .receiver import Receiver


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.buttons: list[dict[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(attributes)
        elif tag == "button":
            self.buttons.append(attributes)
        elif tag == "script":
            self.scripts += 1


async def test_the_page_shows_the_payment_and_one_form(client: httpx.AsyncClient) -> None:
    started = await initialize(client, amount=500000, email="ada@example.com")
    async with httpx.AsyncClient() as browser:
        page = await browser.get(started["authorization_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "₦5,000.00" in page.text
    assert "ada@example.com" in page.text
    assert started["reference"] in page.text
    parsed = _Forms()
    parsed.feed(page.text)
    path = urlsplit(started["authorization_url"]).path
    assert parsed.forms == [{"method": "post", "action": path}]
    outcomes = {(b["name"], b["value"], b["type"]) for b in parsed.buttons}
    assert outcomes == {("outcome", "success", "submit"), ("outcome", "failed", "submit")}
    assert parsed.scripts == 0


async def test_everything_shown_is_escaped(client: httpx.AsyncClient) -> None:
    email = "<script>alert('x')</script>@example.com"
    started = await initialize(client, email=email)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(started["authorization_url"])
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;@example.com" in page.text
    parsed = _Forms()
    parsed.feed(page.text)
    assert parsed.scripts == 0


def test_amounts_for_people() -> None:
    assert format_amount(500000, "NGN") == "₦5,000.00"
    assert format_amount(123456789, "NGN") == "₦1,234,567.89"
    assert format_amount(5, "NGN") == "₦0.05"
    assert format_amount(1000, "USD") == "$10.00"


async def test_paying_completes_the_transaction_and_redirects(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    before = await sandbox.balance()
    started = await initialize(
        client, amount=500000, callback_url="https://shop.example/return?order=7"
    )
    answer = await sandbox.pay(started["authorization_url"])
    ref = started["reference"]
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/return")
    assert parse_qs(location.query) == {"order": ["7"], "trxref": [ref], "reference": [ref]}

    data = (await client.get(f"/transaction/verify/{ref}")).json()["data"]
    assert data["status"] == "success"
    assert data["gateway_response"] == "Successful"
    assert data["channel"] == "card"
    assert data["paid_at"] is not None
    assert data["paidAt"] == data["paid_at"]
    assert data["amount"] == 500000
    assert data["fees"] == local_card_fee(500000) == 17500
    authorization = data["authorization"]
    assert authorization["authorization_code"].startswith("AUTH_")
    assert (authorization["bin"], authorization["last4"], authorization["brand"]) == (
        "408408",
        "4081",
        "visa",
    )
    assert data["log"]["success"] is True
    assert await sandbox.balance() == before + 500000 - 17500

    async def charge_success_arrived() -> bool:
        return len(receiver.events(ref, "charge.success")) == 1

    await eventually(charge_success_arrived, what="charge.success")
    event = receiver.events(ref, "charge.success")[0].event
    assert event["data"] == data


async def test_without_a_callback_url_a_page_says_so(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    started = await initialize(client)
    answer = await sandbox.pay(started["authorization_url"])
    assert answer.status_code == 200
    assert "Payment successful" in answer.text


async def test_a_payment_is_made_once(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    started = await initialize(client, amount=300000)
    await sandbox.pay(started["authorization_url"])
    first = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    balance = await sandbox.balance()

    for outcome in ("success", "failed"):
        async with httpx.AsyncClient() as browser:
            again = await browser.post(started["authorization_url"], data={"outcome": outcome})
        assert again.status_code == 409
        assert "already been processed" in again.text
    async with httpx.AsyncClient() as browser:
        page = await browser.get(started["authorization_url"])
    assert page.status_code == 409

    assert (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"] == first
    assert await sandbox.balance() == balance
    assert len(await sandbox.deliveries(reference=started["reference"])) == 1


async def test_declining_fails_the_transaction_without_a_webhook(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    balance = await sandbox.balance()
    started = await initialize(client, callback_url="https://shop.example/return")
    answer = await sandbox.pay(started["authorization_url"], outcome="failed")
    assert answer.status_code == 200
    assert "declined" in answer.text.lower()
    data = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    assert data["status"] == "failed"
    assert data["gateway_response"] == "Declined"
    assert data["paid_at"] is None
    assert await sandbox.balance() == balance
    # Paystack sends no webhook for a declined payment; paying afterwards is refused.
    assert await sandbox.deliveries(reference=started["reference"]) == []
    async with httpx.AsyncClient() as browser:
        again = await browser.post(started["authorization_url"], data={"outcome": "success"})
    assert again.status_code == 409
    assert receiver.events(started["reference"]) == []


async def test_an_unknown_access_code_is_a_404_page(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as browser:
        shown = await browser.get("/checkout/doesnotexist123")
        posted = await browser.post("/checkout/doesnotexist123", data={"outcome": "success"})
    assert shown.status_code == posted.status_code == 404
    assert shown.headers["content-type"].startswith("text/html")


async def test_an_outcome_other_than_pay_or_decline_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    started = await initialize(client)
    async with httpx.AsyncClient() as browser:
        answer = await browser.post(started["authorization_url"], data={"outcome": "maybe"})
    assert answer.status_code == 400
    data = (await client.get(f"/transaction/verify/{started['reference']}")).json()["data"]
    assert data["status"] == "abandoned"


async def test_the_charge_rule_captures_another_amount(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    ref = reference()
    await sandbox.rule(kind="charge", reference=ref, amount=400000)
    started = await initialize(client, amount=500000, reference=ref)
    await sandbox.pay(started["authorization_url"])
    data = (await client.get(f"/transaction/verify/{ref}")).json()["data"]
    assert data["status"] == "success"
    assert data["amount"] == 400000
    assert data["requested_amount"] == 500000
    # Consumed: the next payment captures what it was initialized with.
    other = await initialize(client, amount=500000)
    await sandbox.pay(other["authorization_url"])
    paid = (await client.get(f"/transaction/verify/{other['reference']}")).json()["data"]
    assert paid["amount"] == 500000
