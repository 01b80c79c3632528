"""The postings of every flow, replays, and events in any order."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.testing.broker import handle_events
from ledger.config import Settings
from ledger.consumers import inbox_handlers
from ledger.flows import Ledger, commission_of
from ledger.journal import Journal
from ledger.models import AccountKind

from .factories import NGN, Books, payout

PRICE = 1_234_567  # commission 10 %: 123,456.7 -> 123,457 (half up)


@pytest.mark.parametrize(
    ("price", "bps", "commission"),
    [
        (1_234_567, 1000, 123_457),
        (1_234_565, 1000, 123_457),
        (1_234_564, 1000, 123_456),
        (5, 1000, 1),
        (4, 1000, 0),
        (100, 0, 0),
        (100, 10_000, 100),
        (999, 250, 25),
    ],
)
def test_commission_rounds_half_up(price: int, bps: int, commission: int) -> None:
    assert commission_of(price, bps) == commission


async def test_payment_completion_withdrawal_payout(books: Books) -> None:
    await books.ready_provider()
    order = books.order(PRICE)
    await books.deliver(order.placed(), order.paid())
    assert await books.balance(AccountKind.escrow, order.id) == PRICE
    assert await books.balance(AccountKind.clearing) == -PRICE
    wallet = await books.wallet()
    assert wallet["in_escrow"] == PRICE
    assert wallet["available"] == 0

    await books.deliver(order.completed())
    net = PRICE - 123_457
    [credited] = await books.events("ledger.provider_credited")
    assert (credited["order_id"], credited["provider_id"]) == (
        str(order.id),
        str(books.provider.id),
    )
    assert (credited["amount"], credited["commission"]) == (net, 123_457)
    await books.deliver(order.completed())  # a second completion event books and says nothing
    assert len(await books.events("ledger.provider_credited")) == 1
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert await books.balance(AccountKind.available, books.provider.id) == net
    assert await books.balance(AccountKind.commission) == 123_457
    wallet = await books.wallet()
    assert wallet == {
        "currency": NGN,
        "available": net,
        "reserved": 0,
        "in_escrow": 0,
        "lifetime_earned": net,
        "refund_payable": 0,
    }

    answer = await books.withdraw(net)
    assert answer.status_code == 201, answer.text
    withdrawal = answer.json()
    assert withdrawal["status"] == "pending"
    [requested] = await books.events("ledger.withdrawal_requested")
    assert requested["withdrawal_id"] == withdrawal["id"]
    assert requested["amount"] == net
    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"]) == (0, net)

    await books.deliver(payout(uuid.UUID(withdrawal["id"]), books.provider.id, net))
    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"], wallet["lifetime_earned"]) == (0, 0, net)
    # Clearing: +price in, -net out: commission stays at Paystack as the platform's.
    assert await books.balance(AccountKind.clearing) == -PRICE + net
    got = await books.client.get(
        f"/wallet/withdrawals/{withdrawal['id']}", headers=books.provider.headers
    )
    assert got.json()["status"] == "succeeded"

    lines = (await books.client.get("/wallet/transactions", headers=books.provider.headers)).json()
    assert [(t["kind"], t["amount"]) for t in lines["items"]] == [
        ("withdrawal", -net),
        ("earning", net),
    ]
    assert lines["items"][1]["order_id"] == str(order.id)
    assert lines["items"][0]["withdrawal_id"] == withdrawal["id"]
    assert (await books.invariants()).ok


async def test_a_failed_payout_gives_the_money_back(books: Books) -> None:
    await books.ready_provider()
    await books.earned(1_000_000)
    answer = await books.withdraw(900_000)
    withdrawal_id = uuid.UUID(answer.json()["id"])
    await books.deliver(payout(withdrawal_id, books.provider.id, 900_000, ok=False))
    wallet = await books.wallet()
    assert (wallet["available"], wallet["reserved"]) == (900_000, 0)
    # A success reported after the failure books nothing (the reservation is settled).
    await books.deliver(payout(withdrawal_id, books.provider.id, 900_000, ok=True))
    assert (await books.wallet())["available"] == 900_000
    lines = (await books.client.get("/wallet/transactions", headers=books.provider.headers)).json()
    assert [(t["kind"], t["amount"]) for t in lines["items"]] == [
        ("withdrawal_returned", 900_000),
        ("withdrawal", -900_000),
        ("earning", 900_000),
    ]
    status = await books.client.get(
        f"/wallet/withdrawals/{withdrawal_id}", headers=books.provider.headers
    )
    assert status.json()["status"] == "failed"
    assert (await books.invariants()).ok


async def test_a_cancelled_paid_order_is_owed_then_refunded(books: Books) -> None:
    order = books.order(500_000)
    await books.deliver(order.placed(), order.paid(), order.cancelled(paid=True))
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert (await books.wallet(books.customer))["refund_payable"] == 500_000
    await books.deliver(order.refunded())
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    assert await books.balance(AccountKind.clearing) == 0
    lines = (await books.client.get("/wallet/transactions", headers=books.customer.headers)).json()
    assert [(t["kind"], t["amount"]) for t in lines["items"]] == [
        ("refund_paid", -500_000),
        ("refund_owed", 500_000),
    ]
    assert (await books.invariants()).ok


async def test_a_second_payment_is_owed_back(books: Books) -> None:
    order = books.order(300_000)
    second = "krk-second"
    await books.deliver(order.placed(), order.paid(), order.paid(reference=second))
    assert await books.balance(AccountKind.escrow, order.id) == 300_000
    assert (await books.wallet(books.customer))["refund_payable"] == 300_000
    await books.deliver(order.refunded(reference=second), order.completed())
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert (await books.invariants()).ok


async def test_replaying_any_event_changes_nothing(books: Books) -> None:
    await books.ready_provider()
    order = books.order(700_000)
    events = [order.placed(), order.paid(), order.completed()]
    await books.deliver(*events)
    before = [
        (a.id, a.debits_posted, a.credits_posted, a.debits_pending) for a in await books.accounts()
    ]
    # The same payloads again as new events (new envelope ids, so the inbox does not stop them):
    # the entries' keys do.
    for event in events:
        await books.deliver(event.model_copy())
    after = [
        (a.id, a.debits_posted, a.credits_posted, a.debits_pending) for a in await books.accounts()
    ]
    assert after == before
    assert (await books.invariants()).ok


async def test_a_completion_before_its_payment_waits_parked(books: Books) -> None:
    order = books.order(400_000)
    await books.deliver(order.placed(), order.completed())
    assert await books.balance(AccountKind.available, books.provider.id) == 0
    parked = await books.client.get("/ledger/parked-events", headers=books.admin.headers)
    [waiting] = parked.json()["items"]
    assert waiting["event_type"] == "orders.order_completed"
    assert waiting["subject"] == str(order.id)
    await books.deliver(order.paid())
    assert await books.balance(AccountKind.available, books.provider.id) == 360_000
    assert (await books.client.get("/ledger/parked-events", headers=books.admin.headers)).json()[
        "items"
    ] == []
    assert (await books.invariants()).ok


async def test_a_refund_before_its_cancellation_and_payment(books: Books) -> None:
    order = books.order(250_000)
    await books.deliver(order.refunded(), order.cancelled(paid=True), order.placed())
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    await books.deliver(order.paid())
    # payment -> escrow; the parked cancellation moves it to refund payable; the parked refund
    # pays it out: all at once.
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert await books.balance(AccountKind.clearing) == 0
    assert (await books.invariants()).ok


async def test_a_commission_of_the_whole_price(
    books: Books, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """LEDGER_COMMISSION_BPS=10000: the platform keeps everything; the provider's leg of zero is
    left out rather than refused."""
    ledger = Ledger(settings.model_copy(update={"commission_bps": 10_000}), Journal())
    order = books.order(100_000)
    await handle_events(
        inbox_handlers(ledger), sessionmaker, order.placed(), order.paid(), order.completed()
    )
    assert await books.balance(AccountKind.escrow, order.id) == 0
    assert await books.balance(AccountKind.commission) == 100_000
    assert (await books.wallet())["available"] == 0
    assert (await books.invariants()).ok


async def test_a_refund_spends_only_its_own_orders_share(books: Books) -> None:
    """One customer owes back X's price and Y's. Y was paid twice and cancelled: its two
    refunds may take Y's share only; the second waits for Y's second payment to be booked
    rather than spending what X owes — so X's refund is never left waiting."""
    x, y = books.order(100_000), books.order(100_000)
    second = "krk-y-second"
    await books.deliver(
        x.placed(), x.paid(), x.cancelled(paid=True), y.placed(), y.paid(), y.cancelled(paid=True)
    )
    await books.deliver(y.refunded(), y.refunded(reference=second))
    assert (await books.wallet(books.customer))["refund_payable"] == 100_000  # X's, untouched
    await books.deliver(x.refunded())
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    await books.deliver(y.paid(reference=second))  # the second payment, booked late
    assert (await books.wallet(books.customer))["refund_payable"] == 0
    parked = (await books.client.get("/ledger/parked-events", headers=books.admin.headers)).json()
    assert parked["items"] == []
    assert await books.balance(AccountKind.clearing) == 0
    assert (await books.invariants()).ok
