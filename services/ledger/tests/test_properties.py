"""Property: whatever order the events arrive in, however they are batched and repeated, the
books end where arithmetic says they must.

Hypothesis draws a few orders (prices with odd amounts, so the commission rounds), each with a
fate - paid then completed; paid, cancelled and refunded; cancelled unpaid, paid late, cancelled
again as paid and refunded; never paid and cancelled - some paid twice (the second payment
refunded), and withdrawals by the providers whose payouts succeed, fail or never report. Every
event is then delivered in a random order, in random batches, some of them twice (the same
payload as a new event, or the same envelope again), through ledger's inbox handlers as the
worker runs them; a withdrawal is requested at a random point of that stream, for an amount its
model says is covered (201) or not (409). Afterwards, and after the worker's sweep of parked
events, every balance is compared with its sum.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from krika_common.events import (
    Delivery,
    Envelope,
    EventData,
    KycApproved,
    PayoutAccountAdded,
    UserRegistered,
)
from krika_common.testing.broker import handle_events
from krika_common.testing.databases import truncate_all
from ledger import flows, service
from ledger.config import Settings
from ledger.consumers import inbox_handlers
from ledger.errors import InsufficientFunds
from ledger.flows import Ledger
from ledger.journal import Journal
from ledger.models import AccountKind
from ledger.schemas import WithdrawalIn

from .factories import NGN, Order, now, payout

Fate = Literal["completed", "refunded", "late", "unpaid"]
Size = Literal["all", "some", "too_much"]
Outcome = Literal["succeeded", "failed", "pending"]
Copy = Literal["once", "payload", "envelope"]  # delivered once; again as a new event; same again

FATES: tuple[Fate, ...] = ("completed", "refunded", "late", "unpaid")
COPIES: tuple[Copy, ...] = ("once", "payload", "envelope")

# Half-up boundaries at 10 % (…5 rounds up), tiny prices (no commission leg), and the rest.
PRICES = st.one_of(
    st.sampled_from([1, 4, 5, 15, 99_995, 1_234_565, 1_234_567]),
    st.integers(min_value=1, max_value=99),
    st.integers(min_value=100, max_value=5_000_000),
)


def commission(price: int, bps: int) -> int:
    """The platform's share, rounded half up to the minor unit (worked out apart from
    ledger.flows.commission_of)."""
    return int((Decimal(price) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class OrderPlan:
    price: int
    fate: Fate
    twice: bool  # paid twice; the second payment is refunded
    provider: int
    customer: int

    @property
    def refunded(self) -> bool:
        return self.fate in ("refunded", "late")

    def roles(self) -> list[str]:
        """The events of its life, in their natural order. `late`: cancelled unpaid, then a
        checkout begun before the cancellation is paid; orders cancels it again as paid."""
        found = ["placed"]
        if self.fate == "completed":
            found += ["paid", "completed"]
        elif self.fate == "refunded":
            found += ["paid", "cancelled", "refund"]
        elif self.fate == "late":
            found += ["cancelled_unpaid", "paid", "cancelled", "refund"]
        else:
            found += ["cancelled"]
        if self.twice and self.fate != "unpaid":
            found += ["paid_again", "refund_again"]
        return found


@dataclass(frozen=True)
class WithdrawalPlan:
    provider: int
    size: Size  # of what is available when it is requested
    percent: int
    extra: int
    outcome: Outcome
    again: Copy  # its payout delivered again
    late: bool  # requested once every order event was sent (more often covered)


@dataclass(frozen=True)
class Step:
    kind: Literal["event", "withdraw", "payout"]
    index: int  # into the events, or the withdrawals
    copy: Copy = "once"


@dataclass(frozen=True)
class Scenario:
    bps: int
    providers: int
    customers: int
    orders: list[OrderPlan]
    withdrawals: list[WithdrawalPlan]
    steps: list[Step]
    cuts: list[bool]  # the batch ends after this step


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    providers = draw(st.integers(1, 2))
    customers = draw(st.integers(1, 2))
    orders = draw(
        st.lists(
            st.builds(
                OrderPlan,
                price=PRICES,
                fate=st.sampled_from((*FATES, "completed")),
                twice=st.booleans(),
                provider=st.integers(0, providers - 1),
                customer=st.integers(0, customers - 1),
            ),
            min_size=1,
            max_size=4,
        )
    )
    withdrawals = draw(
        st.lists(
            st.builds(
                WithdrawalPlan,
                provider=st.integers(0, providers - 1),
                size=st.sampled_from(["all", "some", "some", "too_much"]),
                percent=st.integers(1, 100),
                extra=st.integers(0, 1_000),
                outcome=st.sampled_from(["succeeded", "failed", "pending"]),
                again=st.sampled_from(COPIES),
                late=st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )
    )
    events = sum(len(order.roles()) for order in orders)
    steps = [Step("event", i) for i in range(events)]
    for i, again in enumerate(
        draw(st.lists(st.sampled_from(COPIES), min_size=events, max_size=events))
    ):
        if again != "once":
            steps.append(Step("event", i, again))
    for k, plan in enumerate(withdrawals):
        steps.append(Step("withdraw", k))
        if plan.outcome != "pending":
            steps.append(Step("payout", k))
            if plan.again != "once":
                steps.append(Step("payout", k, plan.again))
    steps = draw(st.permutations(steps))
    late = [s for s in steps if s.kind == "withdraw" and withdrawals[s.index].late]
    steps = [s for s in steps if s not in late] + late
    cuts = draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    bps = draw(st.sampled_from([0, 250, 1000, 3333, 5000, 10_000]))
    return Scenario(bps, providers, customers, orders, withdrawals, steps, cuts)


@dataclass
class Run:
    """One example: the ledger under test, and the model of what it must hold."""

    ledger: Ledger
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    scenario: Scenario
    providers: list[uuid.UUID]
    customers: list[uuid.UUID]
    orders: list[Order]
    events: list[tuple[int, str, EventData]] = field(default_factory=list)
    envelopes: dict[tuple[str, int], Envelope] = field(default_factory=dict)
    batch: list[Envelope] = field(default_factory=list)
    delivered: set[tuple[int, str]] = field(default_factory=set)
    # Withdrawals: their id and amount once reserved; which of them were voided.
    reserved: dict[int, tuple[uuid.UUID, int]] = field(default_factory=dict)
    refused: set[int] = field(default_factory=set)
    voided: set[int] = field(default_factory=set)
    held: dict[int, list[Step]] = field(default_factory=lambda: defaultdict(list))
    payouts: dict[int, EventData] = field(default_factory=dict)

    def net(self, plan: OrderPlan) -> int:
        return plan.price - commission(plan.price, self.ledger.settings.commission_bps)

    def available(self, provider: int) -> int:
        """What the provider may withdraw now, from the events delivered so far: a completed
        order's net once its completion and one of its payments are in; less reservations,
        plus voided ones."""
        earned = sum(
            self.net(plan)
            for i, plan in enumerate(self.scenario.orders)
            if plan.provider == provider
            and (i, "completed") in self.delivered
            and ({(i, "paid"), (i, "paid_again")} & self.delivered)
        )
        plans = self.scenario.withdrawals
        held = sum(
            amount
            for k, (_, amount) in self.reserved.items()
            if plans[k].provider == provider and k not in self.voided
        )
        return earned - held

    async def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql), params)]

    async def flush(self) -> None:
        if self.batch:
            await handle_events(inbox_handlers(self.ledger), self.sessionmaker, *self.batch)
            self.batch = []
            negative = await self.rows(
                "SELECT id FROM accounts WHERE guarded AND "
                "credits_posted - debits_posted - debits_pending < 0"
            )
            assert negative == []

    def send(self, step: Step) -> None:
        if step.kind == "event":
            order, role, data = self.events[step.index]
            self.delivered.add((order, role))
            key = ("event", step.index)
        else:
            k = step.index
            if k in self.refused:
                return
            if k not in self.reserved:  # its payout drawn before its request: after it
                self.held[k].append(step)
                return
            if self.scenario.withdrawals[k].outcome == "failed":
                self.voided.add(k)
            data = self.payouts[k]
            key = ("payout", k)
        if step.copy == "payload":
            self.batch.append(Envelope.wrap(data.model_copy(), producer="test"))
            return
        if key not in self.envelopes:
            self.envelopes[key] = Envelope.wrap(data, producer="test")
        self.batch.append(self.envelopes[key])

    async def withdraw(self, k: int) -> None:
        await self.flush()
        plan = self.scenario.withdrawals[k]
        provider = self.providers[plan.provider]
        available = self.available(plan.provider)
        assert await self.balance(AccountKind.available, provider) == available
        if plan.size == "all":
            amount = available
        elif plan.size == "some":
            amount = available * plan.percent // 100
        else:
            amount = available + 1 + plan.extra
        amount = max(amount, 1)
        async with self.sessionmaker() as session:
            try:
                withdrawal = await service.request_withdrawal(
                    session, self.ledger, provider, WithdrawalIn(amount=amount, currency=NGN)
                )
                await session.commit()
            except InsufficientFunds:
                await session.rollback()
                assert amount > available
                self.refused.add(k)
                self.held.pop(k, None)
                event("a withdrawal refused (409)")
                return
        assert amount <= available
        event("a withdrawal reserved (201)")
        self.reserved[k] = (withdrawal.id, amount)
        self.payouts[k] = payout(withdrawal.id, provider, amount, ok=plan.outcome == "succeeded")
        assert await self.balance(AccountKind.available, provider) == available - amount
        for step in self.held.pop(k, []):
            self.send(step)

    async def balance(self, kind: AccountKind, owner: uuid.UUID | None) -> int:
        totals = await self.totals(kind, owner)
        return totals[2] - totals[1] - totals[0]

    async def totals(self, kind: AccountKind, owner: uuid.UUID | None) -> tuple[int, int, int]:
        """(debits pending, debits posted, credits posted) of a guarded account; zeros when it
        was never opened."""
        found = await self.rows(
            "SELECT debits_pending, debits_posted, credits_posted FROM accounts "
            "WHERE kind = :kind AND owner_id = :owner AND currency = :currency",
            kind=str(kind),
            owner=owner,
            currency=NGN,
        )
        if not found:
            return (0, 0, 0)
        [(pending, debits, credits)] = found
        return int(pending), int(debits), int(credits)

    async def sums(self, kind: AccountKind) -> tuple[int, int]:
        """(posted, pending) sums of a hot account's postings (debits positive)."""
        [(posted, pending)] = await self.rows(
            "SELECT coalesce(sum(p.amount) FILTER (WHERE NOT p.pending), 0), "
            "coalesce(sum(p.amount) FILTER (WHERE p.pending), 0) "
            "FROM postings p JOIN accounts a ON a.id = p.account_id "
            "WHERE a.kind = :kind AND a.currency = :currency",
            kind=str(kind),
            currency=NGN,
        )
        return int(posted), int(pending)

    async def sweep(self) -> None:
        """The worker's upkeep: retry what is parked until nothing is left (it may wait on
        money another order's booking brought: test_worker.py, the upkeep loop's test)."""
        for _ in range(200):
            async with self.sessionmaker() as session, session.begin():
                await flows.retry_parked(session, self.ledger, None)
            [(left,)] = await self.rows(
                "SELECT count(*) FROM parked_events WHERE resolved_at IS NULL"
            )
            if not left:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{left} parked event(s) never applied")


def build(run: Run) -> None:
    """Every order's events, in their natural order (the steps index into this list)."""
    for i, (plan, order) in enumerate(zip(run.scenario.orders, run.orders, strict=True)):
        second = f"{order.reference}-again"
        made: dict[str, EventData] = {
            "placed": order.placed(),
            "paid": order.paid(),
            "completed": order.completed(),
            "cancelled": order.cancelled(paid=plan.refunded),
            "cancelled_unpaid": order.cancelled(paid=False),
            "refund": order.refunded(),
            "paid_again": order.paid(reference=second),
            "refund_again": order.refunded(reference=second),
        }
        run.events += [(i, role, made[role]) for role in plan.roles()]


@pytest.fixture
def property_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"min_withdrawal": 1, "parked_retry_base": 0.001, "parked_retry_max": 0.01}
    )


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_any_interleaving_ends_in_the_same_books(
    scenario: Scenario,
    property_settings: Settings,
    clean_db: AsyncEngine,
    app_engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await truncate_all(clean_db)
    settings = property_settings.model_copy(update={"commission_bps": scenario.bps})
    providers = [uuid.uuid4() for _ in range(scenario.providers)]
    customers = [uuid.uuid4() for _ in range(scenario.customers)]
    run = Run(
        ledger=Ledger(settings, Journal()),  # a new account-id cache: the tables were emptied
        engine=app_engine,
        sessionmaker=sessionmaker,
        scenario=scenario,
        providers=providers,
        customers=customers,
        orders=[
            Order(customers[plan.customer], providers[plan.provider], plan.price)
            for plan in scenario.orders
        ],
    )
    build(run)
    await handle_events(
        inbox_handlers(run.ledger),
        sessionmaker,
        *[
            event
            for who in providers
            for event in (
                KycApproved(
                    submission_id=uuid.uuid4(),
                    user_id=who,
                    decided_by=uuid.uuid4(),
                    decided_at=now(),
                ),
                PayoutAccountAdded(
                    payout_account_id=uuid.uuid4(),
                    provider_id=who,
                    bank_code="058",
                    account_number_last4="6789",
                    account_name="P",
                    currency=NGN,
                    added_at=now(),
                ),
            )
        ],
    )

    for step, cut in zip(scenario.steps, scenario.cuts, strict=True):
        if step.kind == "withdraw":
            await run.withdraw(step.index)
        else:
            run.send(step)
            if cut:
                await run.flush()
    await run.flush()
    assert not run.held
    [(parked,)] = await run.rows("SELECT count(*) FROM parked_events")
    event(f"events parked: {min(parked, 3)}{'+' if parked > 3 else ''}")
    # What was parked applied as soon as its money came, by a booking on its own order: a
    # refund never spends what another order owes the same customer, so none waits for the
    # worker's sweep.
    waiting = await run.rows(
        "SELECT event_type, subject FROM parked_events WHERE resolved_at IS NULL"
    )
    assert waiting == [], waiting
    await run.sweep()

    await check_books(run)


async def check_books(run: Run) -> None:
    scenario = run.scenario
    bps = run.ledger.settings.commission_bps
    plans = scenario.orders
    paid = [p for p in plans if p.fate != "unpaid"]
    completed = [p for p in plans if p.fate == "completed"]
    succeeded = {k for k in run.reserved if scenario.withdrawals[k].outcome == "succeeded"}
    pending = {k for k in run.reserved if scenario.withdrawals[k].outcome == "pending"}
    assert run.voided == {k for k in run.reserved if scenario.withdrawals[k].outcome == "failed"}

    def withdrawn(ks: set[int], provider: int | None = None) -> int:
        return sum(
            amount
            for k, (_, amount) in run.reserved.items()
            if k in ks and provider in (None, scenario.withdrawals[k].provider)
        )

    async with run.sessionmaker() as session:
        result = await service.invariants(session)
    assert result.ok, [c for c in result.checks if not c.ok]

    # Every order's escrow is empty once it is settled (and an unpaid one never held anything).
    for plan, order in zip(plans, run.orders, strict=True):
        expected = (0, plan.price, plan.price) if plan.fate != "unpaid" else (0, 0, 0)
        assert await run.totals(AccountKind.escrow, order.id) == expected

    # Providers: earned the net of their completed orders; withdrawals posted or still reserved.
    for p, provider in enumerate(run.providers):
        earned = sum(run.net(o) for o in completed if o.provider == p)
        out, held = withdrawn(succeeded, p), withdrawn(pending, p)
        assert await run.totals(AccountKind.available, provider) == (held, out, earned)
        assert run.available(p) == earned - out - held
        async with run.sessionmaker() as session:
            wallet = await service.wallet(session, run.ledger, provider)
        [line] = wallet.balances
        assert (line.available, line.reserved, line.lifetime_earned, line.in_escrow) == (
            earned - out - held,
            held,
            earned,
            0,
        )

    # Customers: owed every cancelled paid order and every second payment; all paid back.
    for c, customer in enumerate(run.customers):
        owed = sum(o.price * o.refunded + o.price * o.twice for o in paid if o.customer == c)
        assert await run.totals(AccountKind.refund_payable, customer) == (0, owed, owed)

    # The platform's commission, and the money at Paystack.
    platform = sum(commission(o.price, bps) for o in completed)
    assert await run.sums(AccountKind.commission) == (-platform, 0)
    payments_in = sum(o.price * (1 + o.twice) for o in paid)
    refunds_out = sum(o.price * (o.refunded + o.twice) for o in paid)
    assert await run.sums(AccountKind.clearing) == (
        payments_in - refunds_out - withdrawn(succeeded),
        -withdrawn(pending),
    )
    # Which is to say: what stays at Paystack is the commission plus what providers hold.
    earned_total = sum(run.net(o) for o in completed)
    assert payments_in - refunds_out == platform + earned_total

    totals = await run.rows("SELECT pending, sum(amount) FROM postings GROUP BY pending")
    kinds = dict(await run.rows("SELECT kind, count(*) FROM journal_entries GROUP BY kind"))
    statuses = dict(await run.rows("SELECT id, status FROM withdrawals"))
    [(requested,)] = await run.rows(
        "SELECT count(*) FROM outbox WHERE event_type = 'ledger.withdrawal_requested'"
    )
    assert all(total == 0 for _, total in totals)

    # Each booking once, whatever was delivered twice.
    twice = sum(o.twice for o in paid)
    expected_kinds = {
        "payment_captured": len(paid),
        "duplicate_payment": twice,
        "order_released": len(completed),
        "order_refunded": sum(o.refunded for o in plans),
        "refund_paid": sum(o.refunded for o in plans) + twice,
        "withdrawal_reserved": len(run.reserved),
        "withdrawal_posted": len(succeeded),
        "withdrawal_voided": len(run.voided),
    }
    assert Counter(kinds) == Counter({k: v for k, v in expected_kinds.items() if v})
    assert statuses == {
        withdrawal_id: scenario.withdrawals[k].outcome
        for k, (withdrawal_id, _) in run.reserved.items()
    }
    assert requested == len(run.reserved)


# --- found by batching and rounding: deterministic cases ------------------------------------


async def test_a_failed_batch_leaves_no_account_id_behind(
    settings: Settings, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A payment and the completion of one order in one batch (the completion looks up the
    escrow the payment opened), and another event of the batch fails (a deadlock, a transient
    error): the inbox rolls the batch back and handles its events one by one. The order's
    events must then book as if the batch had never been tried.

    It failed before 1e5c8b3: Journal.account cached the escrow's id when the completion's
    INSERT conflicted with the row the payment had inserted in the same transaction; after
    the rollback the cache named a row that no longer existed, and the payment, handled alone,
    raised Overdraft (its UPDATE found no row), as would every later booking on that order
    until the process restarted."""
    ledger = Ledger(settings, Journal())
    handlers = inbox_handlers(ledger)
    unlucky = uuid.uuid4()

    @handlers.on(UserRegistered, consumer="test.flaky")
    async def flaky(session: AsyncSession, envelope: Envelope) -> None:
        if UserRegistered.from_envelope(envelope).user_id == unlucky:
            raise RuntimeError("a transient failure")

    order = Order(uuid.uuid4(), uuid.uuid4(), 100_000)
    batch = [
        order.placed(),
        order.paid(),
        order.completed(),
        UserRegistered(user_id=unlucky, email="u@example.com", full_name="U", roles=["customer"]),
    ]
    outcomes = await handlers.handle_batch(
        sessionmaker, [Delivery(Envelope.wrap(e, producer="test"), {}) for e in batch]
    )
    assert [type(o).__name__ if o else None for o in outcomes] == [None, None, None, "RuntimeError"]
    async with sessionmaker() as session:
        wallet = await service.wallet(session, ledger, order.provider_id)
    assert wallet.balances[0].available == 90_000


@pytest.mark.parametrize(("bps", "price"), [(10_000, 100_000), (5_000, 1)])
async def test_a_commission_of_the_whole_price_is_booked(
    settings: Settings,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    bps: int,
    price: int,
) -> None:
    """Commission settings allow 10000 bps; at 5000 bps a price of 1 rounds to a commission
    of 1. Before 1e5c8b3 the provider's leg was then 0 and Journal.post refused the entry
    (ValueError 'a leg of zero'): the completion could never be booked."""
    ledger = Ledger(settings.model_copy(update={"commission_bps": bps}), Journal())
    order = Order(uuid.uuid4(), uuid.uuid4(), price)
    handlers = inbox_handlers(ledger)
    for event_data in (order.placed(), order.paid(), order.completed()):
        await handle_events(handlers, sessionmaker, event_data)
    async with sessionmaker() as session:
        assert (await service.invariants(session)).ok
        commission = await service.accounts(
            session, kind=AccountKind.commission, owner_id=None, cursor=None, limit=10
        )
    assert [a.balance for a in commission.items] == [price]
