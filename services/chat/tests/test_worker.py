"""The worker as it runs, on the bus: orders' conversations and identity's users from their
events; order status changes and notifications pushed to both parties' sockets (once, however
often the event comes); a suspended user's connections closed on every replica; every stored
message announced as chat.message_sent, exactly once per message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from chat.config import Settings
from chat.documents import ChatUser, Conversation, Message
from chat.worker import create_worker_app
from krika_common.events import (
    Envelope,
    EventBus,
    EventData,
    NotificationCreated,
    OrderPlaced,
    OrderStatusChanged,
    UserRegistered,
    UserSuspended,
)
from krika_common.testing import eventually
from krika_common.testing.broker import EventsObserver
from krika_common.testing.http import app_client

from .factories import order_conversation, user
from .realtime import TIMEOUT, peers, two_replicas

pytestmark = pytest.mark.usefixtures("mongo")

Publish = Callable[..., Awaitable[Envelope]]


@asynccontextmanager
async def running_worker(
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
) -> AsyncIterator[Publish]:
    """The worker, consuming; yields `publish(event_or_envelope)`, which sends it on the bus as
    its producer would and answers the envelope."""
    worker = create_worker_app(
        settings.model_copy(
            update={"amqp_url": amqp_url, "events_exchange": events_exchange, "relay_interval": 0.1}
        ),
        make_bus=lambda queue: event_bus_factory("chat", queue=f"{queue}.test.{run_id}"),
    )
    producer = event_bus_factory("producers")
    async with app_client(worker) as ops:

        async def consuming() -> bool:
            return (await ops.get("/readyz")).status_code == 200

        await eventually(consuming, within=10, what="worker consuming")
        await producer.connect()

        async def publish(event: EventData | Envelope) -> Envelope:
            envelope = (
                event if isinstance(event, Envelope) else Envelope.wrap(event, producer="test")
            )
            await producer.publish(envelope)
            return envelope

        yield publish


@pytest.fixture
def worker(
    settings: Settings,
    amqp_url: str,
    events_exchange: str,
    event_bus_factory: Callable[..., EventBus],
    run_id: str,
) -> Any:
    return running_worker(settings, amqp_url, events_exchange, event_bus_factory, run_id)


def now() -> datetime:
    return datetime.now(UTC)


async def test_an_orders_conversation_and_users_come_from_their_events(worker: Any) -> None:
    order_id, customer, provider = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    placed = OrderPlaced(
        order_id=order_id,
        service_id=uuid.uuid4(),
        package_id=uuid.uuid4(),
        customer_id=customer,
        provider_id=provider,
        title="Logo",
        price=500_000,
        currency="NGN",
        placed_at=now(),
    )
    registered = UserRegistered(
        user_id=customer, email="c@example.com", full_name="C", roles=["customer"]
    )
    async with worker as publish:
        envelope = await publish(placed)
        await publish(envelope)  # redelivered
        await publish(registered)

        async def arrived() -> bool:
            return (
                await Conversation.find({"order_id": str(order_id)}).count() == 1
                and await ChatUser.get(str(customer)) is not None
            )

        await eventually(arrived, within=TIMEOUT, what="conversation and user")
        # (asserted inside: the documents are bound to the worker's client while it runs)
        found = await Conversation.find({"order_id": str(order_id)}).to_list()
        assert len(found) == 1
        assert found[0].participant_ids == [str(customer), str(provider)]


async def test_an_order_status_change_reaches_both_parties_once(
    worker: Any,
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    customer, provider = await user(mint_token), await user(mint_token, "provider")
    outsider = await user(mint_token)
    order_id = await order_conversation(customer, provider)
    changed = OrderStatusChanged(
        order_id=order_id,
        customer_id=customer.id,
        provider_id=provider.id,
        from_status="paid",
        to_status="in_progress",
        actor_id=provider.id,
        actor_role="provider",
        note=None,
        changed_at=now(),
    )
    async with (
        two_replicas(make_app, gateway_in_front) as (one, two),
        peers(customer, provider, outsider) as (pc, pp, po),
        worker as publish,
    ):
        await pc.connect(one.url)
        await pp.connect(two.url)
        await po.connect(two.url)
        envelope = await publish(changed)
        await publish(envelope)  # the same event again (a redelivery)
        for peer in (pc, pp):
            pushed = await peer.expect("order_status")
            assert pushed["order_id"] == str(order_id)
            assert (pushed["from_status"], pushed["to_status"]) == ("paid", "in_progress")

        notification = NotificationCreated(
            notification_id=uuid.uuid4(),
            user_id=provider.id,
            kind="order_paid",
            title="Order paid",
            body="Logo: the customer paid",
            data={"order_id": str(order_id)},
            created_at=now(),
        )
        await publish(notification)
        pushed = await pp.expect("notification")
        assert pushed["id"] == str(notification.notification_id)
        assert (pushed["kind"], pushed["title"], pushed["body"]) == (
            "order_paid",
            "Order paid",
            "Logo: the customer paid",
        )
        await asyncio.sleep(0.5)  # time for a duplicate, if there were one
        assert len(pc.received("order_status")) == 1
        assert len(pp.received("order_status")) == 1
        assert pc.received("notification") == []
        assert po.received("order_status") == po.received("notification") == []


async def test_a_suspended_user_is_disconnected_everywhere(
    worker: Any,
    make_app: Callable[..., FastAPI],
    gateway_in_front: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    bad, good = await user(mint_token), await user(mint_token)
    async with (
        two_replicas(make_app, gateway_in_front) as (one, two),
        peers(bad, bad, good) as (through_gateway, direct, bystander),
        worker as publish,
    ):
        await through_gateway.connect(one.url)
        await direct.connect(two.chat_url)  # chat itself closes it, not only the gateway
        await bystander.connect(two.url)
        await publish(
            UserSuspended(user_id=bad.id, reason="fraud", suspended_at=now(), token_version=1)
        )
        for peer in (through_gateway, direct):
            await asyncio.wait_for(peer.disconnected.wait(), TIMEOUT)
        assert direct.received("error") == [
            {"error": "account_suspended", "detail": "This account is suspended"}
        ]
        assert bystander.sio.connected
        assert all(c.user_id != bad.key for c in two.hub.connections.values())
        # Coming back with the same token is refused.
        async with peers(bad) as (again,):
            with pytest.raises(Exception):  # noqa: B017,PT011 - the client's own ConnectionError
                await again.connect(two.chat_url)
            assert not again.sio.connected


async def test_every_message_is_announced_once(
    worker: Any,
    make_app: Callable[..., FastAPI],
    events_observer: EventsObserver,
    mint_token: Callable[..., str],
    gateway_in_front: Callable[..., Any],
) -> None:
    a, b = await user(mint_token), await user(mint_token)
    order_id = await order_conversation(a, b)
    conversation = await Conversation.find_one({"order_id": str(order_id)})
    assert conversation is not None
    async with two_replicas(make_app, gateway_in_front) as (one, _), peers(a) as (pa,):
        await pa.connect(one.url)
        sent = [
            await pa.call("message", {"conversation_id": conversation.id, "body": f"n{i}"})
            for i in range(3)
        ]
        async with worker:
            await events_observer.wait_for(3, within=TIMEOUT)

            async def published() -> bool:
                return await Message.find({"pending_event": {"$type": "object"}}).count() == 0

            await eventually(published, within=TIMEOUT, what="relay done")
    envelopes = events_observer.envelopes("chat.message_sent")
    assert sorted(str(e.id) for e in envelopes) == sorted(m["id"] for m in sent)
    first = next(e for e in envelopes if str(e.id) == sent[0]["id"])
    assert first.data["conversation_id"] == conversation.id
    assert first.data["order_id"] == str(order_id)
    assert first.data["sender_id"] == a.key
    assert first.data["recipient_ids"] == [b.key]
    assert first.data["offline_recipient_ids"] == [b.key]
    assert first.data["preview"] == "n0"
