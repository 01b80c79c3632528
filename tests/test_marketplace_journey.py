"""The marketplace end to end: every service, worker, the Paystack sandbox and the gateway as
real, separate processes (what `make up` runs: tests/system.py), driven only through
`http://127.0.0.1:8000/api/v1` as a frontend would (docs/api.md §3-§8).

The happy path: an admin (made by `python -m identity.cli grant-admin`), a provider and a
customer register; the provider passes KYC, adds a payout account and publishes a service; the
customer finds it, orders, checks out and pays on the sandbox's checkout page; the order is
paid, started, delivered, sent back for a revision, delivered again, completed and reviewed;
the provider's wallet shows the price less the commission, the commission is booked, the
provider withdraws it all, the payout succeeds and the wallet is empty; the ledger's invariants
hold. Then what goes wrong: a declined payment (the order expires; or a new checkout pays), a
paid order cancelled (by the customer, the provider, an admin), a payment arriving after the
cancellation, a payout that fails, a payout account removed, a webhook and an event delivered
twice, workers killed with SIGKILL mid-flow; and `make demo`'s script.

The processes run once for the module, with short timings (SETTINGS). Asynchronous effects are
awaited by polling with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import pytest_asyncio
from marketplace import (
    CURRENCY,
    User,
    accounts,
    act,
    balance_of,
    check_out,
    commission,
    invariants,
    log_in,
    new_category,
    ok,
    order,
    place_order,
    publish_service,
    sign_up,
    trial_balance,
    until_status,
    until_wallet,
    until_withdrawal,
    verified_provider,
    wallet,
    withdraw,
)
from system import API, GATEWAY, ROOT, PortsBusy, System
from yarl import URL

from krika_common.events import Envelope
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.smtp import CaptureServer, capturing_smtp

# Short timings, so that what the workers do on their own happens within a test.
SETTINGS = {
    # An unpaid order expires quickly (the declined payment); long enough for every checkout
    # here to be paid before it.
    "ORDERS_UNPAID_TIMEOUT": "12",
    "ORDERS_TIMER_POLL_INTERVAL": "0.2",
    "PAYMENTS_RECONCILE_AFTER": "1",
    "PAYMENTS_FOLLOWUP_AFTER": "1",
    "PAYMENTS_POLL_INTERVAL": "0.2",
    "PAYMENTS_WEBHOOK_RETRY_BASE": "0.5",
    "PAYSTACK_SANDBOX_SETTLE_AFTER": "0.3",
    "PAYSTACK_SANDBOX_WEBHOOK_RETRY_BASE": "0.2",
    "PAYSTACK_SANDBOX_WEBHOOK_RETRY_MAX_DELAY": "1",
    "LEDGER_POLL_INTERVAL": "0.2",
    "LEDGER_PARKED_RETRY_BASE": "0.5",
    "LEDGER_PARKED_RETRY_MAX": "2",
    "LEDGER_INVARIANTS_INTERVAL": "2",
    # Every account here signs up and in from 127.0.0.1: more than the 30 a minute allowed.
    "GATEWAY_RATE_LIMITS": json.dumps({"auth": {"per_user": None, "per_ip": 10_000}}),
    "IDENTITY_ARGON2_TIME_COST": "1",
    "IDENTITY_ARGON2_MEMORY_COST": "8192",
    "IDENTITY_ARGON2_PARALLELISM": "1",
    "NOTIFY_POLL_INTERVAL": "0.2",
}
# The system test's own Redis database (make up: 0, the package tests: 15, bench/gateway: 14).
REDIS_DB = 13
WITHIN = 20.0  # seconds any asynchronous effect gets


@pytest.fixture(scope="module")
def mailbox() -> Iterator[CaptureServer]:
    """The SMTP peer notify sends to (an aiosmtpd capture server)."""
    with capturing_smtp() as smtp:
        yield smtp


@pytest_asyncio.fixture(scope="module")
async def system(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server_url: str,
    amqp_url: str,
    redis_url: str,
    run_id: str,
    mailbox: CaptureServer,
) -> AsyncIterator[System]:
    """Every process of `make up`, with databases, an exchange and a Redis index of its own."""
    running = System(
        run_id=run_id,
        folder=tmp_path_factory.mktemp("system"),
        postgres_url=postgres_server_url,
        amqp_url=amqp_url,
        redis_url=str(URL(redis_url).with_path(f"/{REDIS_DB}")),
        settings=SETTINGS
        | {"NOTIFY_SMTP_HOST": mailbox.host, "NOTIFY_SMTP_PORT": str(mailbox.port)},
    )
    try:
        await running.start()
    except PortsBusy as exc:
        pytest.fail(str(exc))
    except BaseException:
        await running.stop()
        raise
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(autouse=True)
def _no_process_died(system: System) -> Iterator[None]:
    """After each test: no process ended on its own. The errors the processes logged are
    printed (pytest shows them when the test failed)."""
    yield
    print(f"errors logged by the processes so far:\n{system.problems()}")
    dead = system.dead()
    assert not dead, "\n\n".join(f"{name} died:\n{system.log(name)}" for name in dead)


@pytest_asyncio.fixture(scope="module")
async def api(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=API, timeout=30.0, trust_env=False) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def admin(api: httpx.AsyncClient, system: System) -> User:
    """Registered, then made admin by the documented command, then signed in again."""
    user = await sign_up(api, "customer", "Root")
    await system.grant_admin(user.email)
    user.headers = await log_in(api, user.email)
    me = ok(await api.get("/users/me", headers=user.headers))
    assert "admin" in me["roles"]
    return user


@pytest_asyncio.fixture(scope="module")
async def category(api: httpx.AsyncClient, admin: User) -> str:
    return await new_category(api, admin)


@dataclass
class Shop:
    """A verified provider with a published service."""

    provider: User
    service: dict[str, Any]

    @property
    def package(self) -> dict[str, Any]:
        return dict(self.service["packages"][0])


@pytest_asyncio.fixture
async def shop(api: httpx.AsyncClient, admin: User, category: str) -> Shop:
    provider = await verified_provider(api, admin)
    title = f"Logo design {uuid.uuid4().hex[:6]}"
    return Shop(provider, await publish_service(api, provider, category, title=title))


async def pay(system: System, authorization_url: str, outcome: str = "success") -> None:
    """The sandbox's checkout page, its form posted as a browser would (Pay or Decline)."""
    answer = await system.sandbox().pay(authorization_url, outcome)
    assert answer.status_code in (200, 303), answer.text


async def paid_order(
    api: httpx.AsyncClient, system: System, shop: Shop, customer: User
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order placed, checked out and paid; (the order, the checkout)."""
    placed = await place_order(api, customer, shop.service["id"], shop.package["id"])
    checkout = await check_out(api, customer, placed["id"])
    await pay(system, checkout["authorization_url"])
    return await until_status(api, customer, placed["id"], "paid", within=WITHIN), checkout


async def deliver_and_complete(
    api: httpx.AsyncClient, shop: Shop, customer: User, order_id: str
) -> dict[str, Any]:
    await act(api, shop.provider, order_id, "start")
    await act(api, shop.provider, order_id, "deliver", {"message": "Done", "attachment_ids": []})
    return await act(api, customer, order_id, "complete")


async def ledger_ok(api: httpx.AsyncClient, admin: User) -> None:
    """The invariants hold, every currency sums to zero, and no event waits for its money."""
    checked = await invariants(api, admin)
    assert checked["ok"], checked
    totals = (await trial_balance(api, admin))["totals"]
    assert all(total == 0 for total in totals.values()), totals
    parked = ok(await api.get("/ledger/parked-events", headers=admin.headers))["items"]
    assert parked == [], parked


async def test_the_marketplace_journey(
    api: httpx.AsyncClient, system: System, admin: User, category: str, mailbox: CaptureServer
) -> None:
    commission_before = await balance_of(api, admin, "commission")

    # (1)-(2) A provider registers, passes KYC, adds a payout account, publishes a service.
    provider = await verified_provider(api, admin, "Chioma")
    assert ok(await api.get("/kyc/me", headers=provider.headers))["status"] == "approved"
    (payout_account,) = ok(await api.get("/payments/payout-accounts", headers=provider.headers))[
        "items"
    ]
    assert payout_account["bank_code"] == "058"
    title = f"Brand identity {uuid.uuid4().hex[:6]}"
    prices = (2_500_050, 6_000_000)
    service = await publish_service(api, provider, category, title=title, prices=prices)
    assert service["status"] == "published"
    assert service["provider_id"] == provider.id
    assert tuple(p["price"] for p in service["packages"]) == prices

    # (3) A customer finds it by search, orders the first package, checks out and pays.
    customer = await sign_up(api, "customer", "Emeka")
    found = ok(await api.get("/catalog/search", params={"q": title}))["items"]
    assert [item["id"] for item in found] == [service["id"]]
    assert found[0]["starting_price"] == 2_500_050
    package = service["packages"][0]
    placed = await place_order(api, customer, service["id"], package["id"])
    assert placed["status"] == "pending"
    assert (placed["price"], placed["currency"], placed["provider_id"]) == (
        2_500_050,
        CURRENCY,
        provider.id,
    )
    order_id = placed["id"]
    checkout = await check_out(api, customer, order_id)
    assert (checkout["amount"], checkout["currency"], checkout["order_id"]) == (
        2_500_050,
        CURRENCY,
        order_id,
    )
    again = await api.post(
        "/payments/checkout", json={"order_id": order_id}, headers=customer.idem()
    )
    assert ok(again, 201)["reference"] == checkout["reference"]  # the same pending payment
    await pay(system, checkout["authorization_url"])

    # (4) Paid; started, delivered, a revision, delivered again, completed, reviewed.
    paid = await until_status(api, customer, order_id, "paid", within=WITHIN)
    assert paid["paid"] is True
    payment = ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))
    assert (payment["status"], payment["amount"]) == ("succeeded", 2_500_050)
    in_escrow = await until_wallet(api, provider, in_escrow=2_500_050, within=WITHIN)
    assert in_escrow["available"] == 0

    await act(api, provider, order_id, "start")
    await act(api, provider, order_id, "deliver", {"message": "First drafts", "attachment_ids": []})
    revised = await act(api, customer, order_id, "request-revision", {"note": "Bolder, please"})
    assert (revised["status"], revised["revisions_used"]) == ("in_progress", 1)
    await act(api, provider, order_id, "deliver", {"message": "Bolder", "attachment_ids": []})
    done = await act(api, customer, order_id, "complete")
    assert done["status"] == "completed"
    history = ok(await api.get(f"/orders/{order_id}/history", headers=customer.headers))["items"]
    assert [(h["from_status"], h["to_status"], h["actor_role"]) for h in history] == [
        (None, "pending", "customer"),
        ("pending", "paid", "system"),
        ("paid", "in_progress", "provider"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "in_progress", "customer"),
        ("in_progress", "delivered", "provider"),
        ("delivered", "completed", "customer"),
    ]

    review: list[httpx.Response] = []

    async def reviewed() -> bool:
        answer = await api.post(
            f"/catalog/services/{service['id']}/reviews",
            json={"order_id": order_id, "rating": 5, "text": "Exactly what we needed"},
            headers=customer.headers,
        )
        assert answer.status_code in (201, 403), answer.text  # not_eligible until it hears
        review.append(answer)
        return answer.status_code == 201

    await eventually(reviewed, within=WITHIN, what="catalog learning of the completed order")
    page = ok(await api.get(f"/catalog/services/{service['id']}"))
    assert (page["rating_average"], page["rating_count"]) == (5, 1)

    # (5) The wallet: the price less 10 % (half up), the commission booked.
    net = 2_500_050 - commission(2_500_050)
    assert net == 2_250_045
    credited = await until_wallet(
        api, provider, available=net, in_escrow=0, lifetime_earned=net, within=WITHIN
    )
    assert credited["reserved"] == 0
    (earning,) = ok(await api.get("/wallet/transactions", headers=provider.headers))["items"]
    assert (earning["kind"], earning["amount"], earning["order_id"]) == ("earning", net, order_id)
    assert await balance_of(api, admin, "commission") - commission_before == commission(2_500_050)
    (escrow,) = await accounts(api, admin, kind="escrow", owner_id=order_id)
    assert escrow["balance"] == 0
    lines = {line["kind"]: line for line in (await trial_balance(api, admin))["lines"]}
    # A trial balance line is debits minus credits; the commission is a credit.
    assert -lines["commission"]["balance"] == await balance_of(api, admin, "commission")

    # The provider withdraws everything; the sandbox settles the transfer; the wallet is empty.
    withdrawal = await withdraw(api, provider, net)
    assert (withdrawal["status"], withdrawal["amount"]) == ("pending", net)
    await until_wallet(api, provider, available=0, reserved=net, within=WITHIN)
    done_withdrawal = await until_withdrawal(
        api, provider, withdrawal["id"], "succeeded", within=WITHIN
    )
    assert done_withdrawal["finished_at"] is not None
    emptied = await until_wallet(api, provider, available=0, reserved=0, within=WITHIN)
    assert emptied["lifetime_earned"] == net
    kinds = [
        t["kind"]
        for t in ok(await api.get("/wallet/transactions", headers=provider.headers))["items"]
    ]
    assert kinds == ["withdrawal", "earning"]
    assert (await wallet(api, customer))["refund_payable"] == 0

    # (6) The ledger's invariants hold; every currency sums to zero.
    await ledger_ok(api, admin)

    # (7) The order's conversation was opened for both parties when it was placed.
    for party in (customer, provider):
        conversations = ok(await api.get("/chat/conversations", headers=party.headers))["items"]
        assert [c["order_id"] for c in conversations] == [order_id]
        assert set(conversations[0]["participant_ids"]) == {customer.id, provider.id}

    # (8) Both parties were told of each step, by e-mail and in the app.
    await told(api, mailbox, customer, CUSTOMER_HEARS, order_id)
    await told(api, mailbox, provider, PROVIDER_HEARS, order_id)
    # The verification e-mail's link works (through the gateway, as the web app would call it).
    (verification,) = [m for m in mailbox.to(customer.email) if m.kind == "email_verification"]
    link = re.search(r"https?://\S+/verify-email\?token=(\S+)", verification.text)
    assert link is not None, verification.text
    verified = ok(await api.post("/auth/verify-email", json={"token": unquote(link.group(1))}))
    assert verified["email_verified"] is True
    # The one-click unsubscribe works without a login, through the gateway.
    (completed,) = [m for m in mailbox.to(customer.email) if m.kind == "order_completed"]
    unsubscribe = completed.message["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith(f"{API}/notifications/unsubscribe?token=")
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as browser:
        answer = await browser.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200, answer.text
    prefs = ok(await api.get("/notifications/preferences", headers=customer.headers))
    assert prefs["email"]["order_completed"] is False


# What each party is told of the journey above: e-mail kinds (each with a text and an HTML part)
# and, but for the security ones, in-app notifications.
CUSTOMER_HEARS = {
    "welcome": 1,
    "email_verification": 1,
    "order_paid": 1,
    "order_delivered": 2,  # delivered, then delivered again after the revision
    "order_completed": 1,
}
PROVIDER_HEARS = {
    "welcome": 1,
    "email_verification": 1,
    "kyc_submitted": 1,
    "kyc_approved": 1,
    "order_placed": 1,
    "order_paid": 1,
    "revision_requested": 1,
    "order_completed": 1,
    "review_posted": 1,
    "provider_credited": 1,
    "payout_succeeded": 1,
}


async def told(
    api: httpx.AsyncClient,
    mailbox: CaptureServer,
    user: User,
    kinds: dict[str, int],
    order_id: str,
) -> None:
    def mailed() -> Counter[str]:
        return Counter(m.kind for m in mailbox.to(user.email))

    await eventually(
        lambda: mailed() == Counter(kinds), within=WITHIN, what=f"the e-mails to {user.email}"
    )
    for mail in mailbox.to(user.email):
        assert mail.subject.strip(), mail.kind
        assert mail.text.strip()
        assert "<html" in mail.html.lower()
        if mail.kind.startswith(("order_", "revision_", "provider_credited")):
            assert f"/orders/{order_id}" in mail.text, mail.kind
    notes = ok(await api.get("/notifications", params={"limit": 50}, headers=user.headers))
    in_app = Counter(n["kind"] for n in notes["items"])
    assert in_app == Counter({k: n for k, n in kinds.items() if k != "email_verification"})


async def test_a_declined_payment_leaves_the_order_pending_until_it_expires(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customer = await sign_up(api, "customer")
    placed = await place_order(api, customer, shop.service["id"], shop.package["id"])
    checkout = await check_out(api, customer, placed["id"])
    await pay(system, checkout["authorization_url"], "failed")

    # No webhook for a decline: payments' reconciliation finds it.
    async def failed() -> bool:
        answer = ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))
        return bool(answer["status"] == "failed")

    await eventually(failed, within=WITHIN, what="payments finding the declined payment")
    assert (await order(api, customer, placed["id"]))["status"] == "pending"

    # ORDERS_UNPAID_TIMEOUT later, orders' timer cancels it; no money ever moved.
    expired = await until_status(api, customer, placed["id"], "cancelled", within=WITHIN + 12)
    assert expired["paid"] is False
    history = ok(await api.get(f"/orders/{placed['id']}/history", headers=customer.headers))
    assert [(h["kind"], h["to_status"], h["actor_role"]) for h in history["items"]] == [
        ("transition", "pending", "customer"),
        ("note", "pending", "system"),  # payments.payment_failed
        ("transition", "cancelled", "system"),
    ]
    assert "failed" in history["items"][1]["note"]
    refused = await api.post(
        "/payments/checkout", json={"order_id": placed["id"]}, headers=customer.idem()
    )

    async def not_payable() -> bool:
        answer = await api.post(
            "/payments/checkout", json={"order_id": placed["id"]}, headers=customer.idem()
        )
        return answer.status_code == 409 and answer.json()["error"] == "order_not_payable"

    assert refused.status_code in (201, 409), refused.text
    await eventually(not_payable, within=WITHIN, what="payments learning of the cancellation")
    escrow = await accounts(api, admin, kind="escrow", owner_id=placed["id"])
    assert sum(a["balance"] for a in escrow) == 0
    assert (await wallet(api, customer))["refund_payable"] == 0
    await ledger_ok(api, admin)


async def test_a_paid_order_cancelled_is_refunded(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customer = await sign_up(api, "customer")
    placed, checkout = await paid_order(api, system, shop, customer)
    price = placed["price"]
    await until_wallet(api, shop.provider, in_escrow=price, within=WITHIN)

    cancelled = await act(api, customer, placed["id"], "cancel", {"reason": "Plans changed"})
    assert (cancelled["status"], cancelled["paid"]) == ("cancelled", True)

    # payments refunds it (the sandbox processes the refund); ledger owes, then pays it back.
    async def refunded() -> bool:
        answer = ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))
        return bool(answer["status"] == "refunded")

    await eventually(refunded, within=WITHIN, what="the refund being processed")
    await until_wallet(api, customer, refund_payable=0, within=WITHIN)
    transactions = ok(await api.get("/wallet/transactions", headers=customer.headers))["items"]

    async def both_booked() -> bool:
        nonlocal transactions
        transactions = ok(await api.get("/wallet/transactions", headers=customer.headers))["items"]
        return len(transactions) == 2

    await eventually(both_booked, within=WITHIN, what="the refund owed and paid")
    assert [(t["kind"], t["amount"]) for t in transactions] == [
        ("refund_paid", -price),
        ("refund_owed", price),
    ]
    (escrow,) = await accounts(api, admin, kind="escrow", owner_id=placed["id"])
    assert escrow["balance"] == 0
    provider = await wallet(api, shop.provider)
    assert (provider["in_escrow"], provider["available"]) == (0, 0)
    history = ok(await api.get(f"/orders/{placed['id']}/history", headers=customer.headers))
    assert [(h["kind"], h["to_status"]) for h in history["items"]][-2:] == [
        ("transition", "cancelled"),
        ("note", "cancelled"),  # payments.refund_succeeded
    ]
    assert history["items"][-1]["note"].startswith(f"Refunded {price} NGN")
    await ledger_ok(api, admin)


async def test_a_failed_payout_returns_the_money(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customer = await sign_up(api, "customer")
    placed, _ = await paid_order(api, system, shop, customer)
    await deliver_and_complete(api, shop, customer, placed["id"])
    net = placed["price"] - commission(placed["price"])
    await until_wallet(api, shop.provider, available=net, within=WITHIN)

    # The bank takes the transfer, then it fails.
    await system.sandbox().rule(kind="transfer", answer="pending", outcome="failed")
    withdrawal = await withdraw(api, shop.provider, net)
    failed = await until_withdrawal(api, shop.provider, withdrawal["id"], "failed", within=WITHIN)
    assert failed["finished_at"] is not None
    back = await until_wallet(api, shop.provider, available=net, reserved=0, within=WITHIN)
    assert back["lifetime_earned"] == net
    moves = ok(await api.get("/wallet/transactions", headers=shop.provider.headers))["items"]
    assert [(t["kind"], t["amount"]) for t in moves] == [
        ("withdrawal_returned", net),
        ("withdrawal", -net),
        ("earning", net),
    ]

    # A second try goes through.
    again = await withdraw(api, shop.provider, net)
    await until_withdrawal(api, shop.provider, again["id"], "succeeded", within=WITHIN)
    await until_wallet(api, shop.provider, available=0, reserved=0, within=WITHIN)
    await ledger_ok(api, admin)


@contextlib.asynccontextmanager
async def observing(system: System) -> AsyncIterator[EventsObserver]:
    """Every message published on the system's exchange meanwhile."""
    import aio_pika

    observer = EventsObserver()
    connection = await aio_pika.connect(system.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(system.exchange)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        await queue.consume(observer._on_message, no_ack=True)
        yield observer


async def test_a_webhook_and_an_event_delivered_twice_change_nothing(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customer = await sign_up(api, "customer")
    async with observing(system) as observer:
        placed, checkout = await paid_order(api, system, shop, customer)
        order_id = placed["id"]
        await deliver_and_complete(api, shop, customer, order_id)
        net = placed["price"] - commission(placed["price"])
        await until_wallet(api, shop.provider, available=net, within=WITHIN)

        def announced() -> bool:
            return bool(observer.envelopes("orders.order_completed"))

        await eventually(announced, within=WITHIN, what="orders.order_completed on the bus")
    commission_before = await balance_of(api, admin, "commission")
    history_before = ok(await api.get(f"/orders/{order_id}/history", headers=customer.headers))

    # Paystack sends charge.success again (same bytes, same signature).
    sandbox = system.sandbox()
    (delivery,) = await sandbox.deliveries(checkout["reference"], "charge.success")
    assert delivery["status"] == "delivered"
    await sandbox.redeliver(delivery["id"])

    async def redelivered() -> bool:
        found = await sandbox.deliveries(checkout["reference"], "charge.success")
        return len(found) == 2 and found[1]["status"] == "delivered"

    await eventually(redelivered, within=WITHIN, what="the duplicate webhook delivered")
    assert (
        ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))["status"]
        == "succeeded"
    )

    # The relays publish payment_succeeded and order_completed again (same ids), as a relay
    # that crashed before marking them published does.
    consumed = "krika_events_consumed_total"
    twice = [
        (observer.envelopes("payments.payment_succeeded"), ("orders-worker", "ledger-worker")),
        (observer.envelopes("orders.order_completed"), ("ledger-worker", "catalog-worker")),
    ]
    before: dict[tuple[str, str], float] = {}
    for envelopes, workers in twice:
        (envelope,) = [e for e in envelopes if e.data["order_id"] == order_id]
        for worker in workers:
            before[worker, envelope.type] = await system.counter(
                worker, consumed, event_type=envelope.type
            )
        await republish(system, envelope)

    async def handled_again() -> bool:
        for (worker, event_type), count in before.items():
            if await system.counter(worker, consumed, event_type=event_type) < count + 1:
                return False
        return True

    await eventually(handled_again, within=WITHIN, what="the duplicates consumed")

    # Nothing doubled: one payment, one credit, one commission, the same history.
    provider = await wallet(api, shop.provider)
    assert (provider["available"], provider["lifetime_earned"], provider["in_escrow"]) == (
        net,
        net,
        0,
    )
    assert (await wallet(api, customer))["refund_payable"] == 0
    assert await balance_of(api, admin, "commission") == commission_before
    history = ok(await api.get(f"/orders/{order_id}/history", headers=customer.headers))
    assert history == history_before
    assert (
        ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))["status"]
        == "succeeded"
    )
    assert (
        len(ok(await api.get("/wallet/transactions", headers=shop.provider.headers))["items"]) == 1
    )
    await ledger_ok(api, admin)


async def republish(system: System, envelope: Envelope) -> None:
    await system.publish(
        envelope.model_dump_json().encode(), routing_key=envelope.type, message_id=str(envelope.id)
    )


async def test_workers_killed_mid_flow_lose_nothing(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customers = [await sign_up(api, "customer") for _ in range(3)]
    orders = [(await paid_order(api, system, shop, c))[0] for c in customers]
    each = shop.package["price"] - commission(shop.package["price"])
    net = 3 * each

    # orders' worker (its relay) dies while the work is delivered and accepted: the completions
    # wait in orders' outbox.
    assert system.kill("orders-worker") == -signal.SIGKILL
    for customer, placed in zip(customers[:2], orders[:2], strict=True):
        await deliver_and_complete(api, shop, customer, placed["id"])
    assert (await wallet(api, shop.provider))["available"] == 0
    await system.restart("orders-worker")
    await until_wallet(api, shop.provider, available=2 * each, within=WITHIN)

    # ledger's worker dies as the last completion is on its way to it.
    await deliver_and_complete(api, shop, customers[2], orders[2]["id"])
    assert system.kill("ledger-worker") == -signal.SIGKILL
    await system.restart("ledger-worker")
    await until_wallet(api, shop.provider, available=net, in_escrow=0, within=WITHIN)

    # payments' worker dies as the withdrawal is requested: the transfer is sent after restart.
    withdrawal = await withdraw(api, shop.provider, net)
    assert system.kill("payments-worker") == -signal.SIGKILL
    await system.restart("payments-worker")
    await until_withdrawal(api, shop.provider, withdrawal["id"], "succeeded", within=WITHIN)
    await until_wallet(api, shop.provider, available=0, reserved=0, lifetime_earned=net)
    for customer, placed in zip(customers, orders, strict=True):
        assert (await order(api, customer, placed["id"]))["status"] == "completed"
    await ledger_ok(api, admin)


async def test_a_payment_after_the_cancellation_is_refunded(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    """The customer cancels, then pays in the checkout page still open in another tab."""
    customer = await sign_up(api, "customer")
    placed = await place_order(api, customer, shop.service["id"], shop.package["id"])
    checkout = await check_out(api, customer, placed["id"])
    cancelled = await act(api, customer, placed["id"], "cancel", {"reason": "Changed my mind"})
    assert (cancelled["status"], cancelled["paid"]) == ("cancelled", False)
    await pay(system, checkout["authorization_url"])

    async def refunded() -> bool:
        answer = ok(await api.get(f"/payments/{checkout['reference']}", headers=customer.headers))
        return bool(answer["status"] == "refunded")

    await eventually(refunded, within=WITHIN, what="the late payment refunded")
    await until_wallet(api, customer, refund_payable=0, within=WITHIN)
    history = ok(await api.get(f"/orders/{placed['id']}/history", headers=customer.headers))
    assert [(h["kind"], h["to_status"]) for h in history["items"]] == [
        ("transition", "pending"),
        ("transition", "cancelled"),
        ("note", "cancelled"),  # the payment arrived after the cancellation
        ("note", "cancelled"),  # refunded
    ]
    (escrow,) = await accounts(api, admin, kind="escrow", owner_id=placed["id"])
    assert (escrow["credits_posted"], escrow["balance"]) == (placed["price"], 0)
    assert (await wallet(api, shop.provider))["in_escrow"] == 0
    await ledger_ok(api, admin)


async def test_after_a_declined_payment_a_new_checkout_pays(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    customer = await sign_up(api, "customer")
    placed = await place_order(api, customer, shop.service["id"], shop.package["id"])
    declined = await check_out(api, customer, placed["id"])
    await pay(system, declined["authorization_url"], "failed")

    async def failed() -> bool:
        answer = ok(await api.get(f"/payments/{declined['reference']}", headers=customer.headers))
        return bool(answer["status"] == "failed")

    await eventually(failed, within=WITHIN, what="payments finding the declined payment")
    second = await check_out(api, customer, placed["id"])
    assert second["reference"] != declined["reference"]
    await pay(system, second["authorization_url"])
    await until_status(api, customer, placed["id"], "paid", within=WITHIN)
    await until_wallet(api, shop.provider, in_escrow=placed["price"], within=WITHIN)
    await ledger_ok(api, admin)


def test_make_demo_tells_the_journey(system: System) -> None:
    """`make demo`'s script against this system (its identity database for grant-admin)."""
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--gateway", GATEWAY],
        cwd=ROOT,
        env=system.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    story = done.stdout
    for told in (
        "is made an admin: `python -m identity.cli grant-admin",
        "Chioma's KYC: approved",
        "Emeka presses Pay",
        "order paid",
        "Emeka asks for a revision: order in_progress, revisions 1/1",
        "Emeka accepts the work: order completed",
        "Chioma is credited ₦22,500.45 (₦25,000.50 less ₦2,500.05 commission, 10 %)",
        "withdrawal succeeded",
        "invariants: ok",
        "Trial balance",
        "total NGN",
    ):
        assert told in story, f"{told!r} not in:\n{story}"


async def test_cancellations_by_the_provider_and_by_an_admin_are_refunded(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    """The provider cancels a paid order; an admin cancels one already delivered."""
    for who, steps in ((shop.provider, ()), (admin, ("start", "deliver"))):
        customer = await sign_up(api, "customer")
        placed, checkout = await paid_order(api, system, shop, customer)
        for step in steps:
            body = {"message": "Drafts", "attachment_ids": []} if step == "deliver" else None
            await act(api, shop.provider, placed["id"], step, body)
        cancelled = await act(api, who, placed["id"], "cancel", {"reason": "Dispute"})
        assert (cancelled["status"], cancelled["paid"]) == ("cancelled", True)
        reference = checkout["reference"]

        async def refunded(reference: str = reference, customer: User = customer) -> bool:
            answer = ok(await api.get(f"/payments/{reference}", headers=customer.headers))
            return bool(answer["status"] == "refunded")

        await eventually(refunded, within=WITHIN, what="the refund being processed")
        await until_wallet(api, customer, refund_payable=0, within=WITHIN)
        (escrow,) = await accounts(api, admin, kind="escrow", owner_id=placed["id"])
        assert escrow["balance"] == 0
    provider = await wallet(api, shop.provider)
    assert (provider["available"], provider["in_escrow"], provider["lifetime_earned"]) == (0, 0, 0)
    await ledger_ok(api, admin)


async def test_a_removed_payout_account_stops_withdrawals(
    api: httpx.AsyncClient, system: System, admin: User, shop: Shop
) -> None:
    """payments announces the removal; until ledger hears it, a withdrawal is accepted, then
    fails (no account to pay) and its money comes back; after, ledger refuses it."""
    customer = await sign_up(api, "customer")
    placed, _ = await paid_order(api, system, shop, customer)
    await deliver_and_complete(api, shop, customer, placed["id"])
    net = placed["price"] - commission(placed["price"])
    await until_wallet(api, shop.provider, available=net, within=WITHIN)
    (account,) = ok(await api.get("/payments/payout-accounts", headers=shop.provider.headers))[
        "items"
    ]
    removed = await api.delete(
        f"/payments/payout-accounts/{account['id']}", headers=shop.provider.headers
    )
    assert removed.status_code == 204, removed.text

    body = {"amount": net, "currency": CURRENCY}

    async def refused() -> bool:
        answer = await api.post("/wallet/withdrawals", json=body, headers=shop.provider.idem())
        if answer.status_code == 201:  # before ledger heard: payments fails it
            made = answer.json()
            await until_withdrawal(api, shop.provider, made["id"], "failed", within=WITHIN)
            await until_wallet(api, shop.provider, available=net, reserved=0, within=WITHIN)
            return False
        assert answer.status_code == 409, answer.text
        return bool(answer.json()["error"] == "payout_account_required")

    await eventually(refused, within=WITHIN, what="ledger hearing of the removed account")
    assert (await wallet(api, shop.provider))["available"] == net
    await ledger_ok(api, admin)
