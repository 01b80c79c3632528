"""Webhooks: signed bytes, retries with backoff, and the webhook rules (twice, never, late,
out of order), redelivery."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from krika_common.server import free_port
from krika_common.testing import eventually
from krika_common.testing.http import serving
from payments.sandbox.testing import Sandbox, running_sandbox
from payments.sandbox.webhooks import retry_delay

from .factories import initialize, paid_transaction, recipient, reference, transfer
from .receiver import Receiver


async def _arrivals(receiver: Receiver, ref: str, count: int, event: str | None = None) -> None:
    async def arrived() -> bool:
        return len(receiver.events(ref, event)) >= count

    await eventually(arrived, what=f"{count} x {event or 'webhook'} for {ref}")


async def _delivery(sandbox: Sandbox, ref: str, event: str) -> dict[str, Any]:
    found = await sandbox.deliveries(reference=ref, event=event)
    assert len(found) == 1, found
    return found[0]


async def test_the_signature_is_the_hmac_sha512_of_the_exact_body(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client)
    await _arrivals(receiver, paid["reference"], 1)
    received = receiver.events(paid["reference"])[0]
    expected = hmac.new(sandbox.secret_key.encode(), received.body, hashlib.sha512).hexdigest()
    assert received.headers["x-paystack-signature"] == expected
    assert received.headers["content-type"] == "application/json"
    wrong = hmac.new(b"sk_test_other", received.body, hashlib.sha512).hexdigest()
    assert received.headers["x-paystack-signature"] != wrong
    delivery = await _delivery(sandbox, paid["reference"], "charge.success")
    assert delivery["body"].encode() == received.body
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert json.loads(received.body) == {"event": "charge.success", "data": paid}


async def test_a_refused_webhook_is_retried_with_backoff(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    paid = await paid_transaction(sandbox, client)
    await _arrivals(receiver, paid["reference"], 3)
    first, second, third = receiver.events(paid["reference"])
    assert first.body == second.body == third.body
    assert first.headers["x-paystack-signature"] == third.headers["x-paystack-signature"]
    # settings in tests: base 0.1 s, doubled per attempt
    assert second.at - first.at >= 0.1 * 0.9
    assert third.at - second.at >= 0.2 * 0.9

    async def delivered() -> bool:
        found = await _delivery(sandbox, paid["reference"], "charge.success")
        return bool(found["status"] == "delivered")

    await eventually(delivered, what="delivered")
    delivery = await _delivery(sandbox, paid["reference"], "charge.success")
    assert (delivery["attempts"], delivery["last_status_code"]) == (3, 200)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_a_webhook_nobody_takes_fails_after_the_last_attempt() -> None:
    hooks = Receiver(statuses=[500] * 100)
    with running_sandbox(webhook_max_attempts=3) as sandbox:
        async with serving(hooks.app()) as base_url, sandbox.client() as client:
            await sandbox.set_webhook_url(f"{base_url}/hooks/paystack")
            paid = await paid_transaction(sandbox, client)

            async def failed() -> bool:
                found = await _delivery(sandbox, paid["reference"], "charge.success")
                return bool(found["status"] == "failed")

            await eventually(failed, what="failed delivery")
            delivery = await _delivery(sandbox, paid["reference"], "charge.success")
            assert (delivery["attempts"], delivery["last_status_code"]) == (3, 500)
            await asyncio.sleep(0.5)
            assert len(hooks.events(paid["reference"])) == 3

            # Nothing listening at all: connection errors are retried the same way.
            await sandbox.set_webhook_url(f"http://127.0.0.1:{free_port()}/hooks")
            other = await paid_transaction(sandbox, client)

            async def gave_up() -> bool:
                found = await _delivery(sandbox, other["reference"], "charge.success")
                return bool(found["status"] == "failed")

            await eventually(gave_up, what="failed delivery")
            delivery = await _delivery(sandbox, other["reference"], "charge.success")
            assert delivery["attempts"] == 3
            assert delivery["last_status_code"] is None
            assert "ConnectError" in delivery["last_error"]


async def test_webhooks_wait_for_a_webhook_url(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sandbox.set_webhook_url(None)
    paid = await paid_transaction(sandbox, client)
    await asyncio.sleep(0.5)
    delivery = await _delivery(sandbox, paid["reference"], "charge.success")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)
    await sandbox.set_webhook_url(receiver.url)
    await _arrivals(receiver, paid["reference"], 1)


async def test_twice(sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver) -> None:
    ref = reference()
    await sandbox.rule(kind="webhook", event="charge.success", reference=ref, delivery="twice")
    await paid_transaction(sandbox, client, reference=ref)
    await _arrivals(receiver, ref, 2)
    first, second = receiver.events(ref)
    assert first.body == second.body
    assert first.headers["x-paystack-signature"] == second.headers["x-paystack-signature"]
    assert len(await sandbox.deliveries(reference=ref)) == 2


async def test_never(sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver) -> None:
    ref = reference()
    await sandbox.rule(kind="webhook", event="charge.success", reference=ref, delivery="never")
    await paid_transaction(sandbox, client, reference=ref)
    later = await paid_transaction(sandbox, client)
    await _arrivals(receiver, later["reference"], 1)
    await asyncio.sleep(0.3)
    assert receiver.events(ref) == []
    delivery = await _delivery(sandbox, ref, "charge.success")
    assert (delivery["status"], delivery["attempts"]) == ("dropped", 0)


async def test_late(sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver) -> None:
    ref = reference()
    await sandbox.rule(
        kind="webhook", event="charge.success", reference=ref, delivery="late", delay=1.0
    )
    started = await initialize(client, reference=ref)
    paid_at = asyncio.get_running_loop().time()
    await sandbox.pay(started["authorization_url"])
    assert (await _delivery(sandbox, ref, "charge.success"))["status"] == "held"
    await asyncio.sleep(0.5)
    assert receiver.events(ref) == []
    await _arrivals(receiver, ref, 1)
    assert asyncio.get_running_loop().time() - paid_at >= 1.0
    assert (await _delivery(sandbox, ref, "charge.success"))["status"] == "delivered"


async def test_out_of_order_refund_events(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client)
    ref = paid["reference"]
    await sandbox.rule(
        kind="webhook", event="refund.pending", reference=ref, delivery="out_of_order", delay=0.4
    )
    await client.post("/refund", json={"transaction": ref})
    await _arrivals(receiver, ref, 3)
    events = [r for r in receiver.events(ref) if r.event["event"].startswith("refund.")]
    assert [r.event["event"] for r in events] == ["refund.processed", "refund.pending"]
    assert events[1].at - events[0].at >= 0.4 * 0.9


async def test_out_of_order_transfer_events(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    code = await recipient(client)
    first, second = reference("wd"), reference("wd")
    await sandbox.rule(
        kind="webhook",
        event="transfer.success",
        reference=first,
        delivery="out_of_order",
        delay=0.3,
    )
    await transfer(client, code, reference=first)
    await asyncio.sleep(0.4)  # the first has settled: its webhook is held
    assert receiver.events(first) == []
    assert (await _delivery(sandbox, first, "transfer.success"))["status"] == "held"
    await transfer(client, code, reference=second)
    await _arrivals(receiver, first, 1)
    [later] = receiver.events(first)
    [earlier] = receiver.events(second)
    assert later.at - earlier.at >= 0.3 * 0.9


async def test_redeliver_sends_the_same_bytes_again(
    sandbox: Sandbox, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    paid = await paid_transaction(sandbox, client)
    await _arrivals(receiver, paid["reference"], 1)
    delivery = await _delivery(sandbox, paid["reference"], "charge.success")
    await sandbox.redeliver(delivery["id"])
    await _arrivals(receiver, paid["reference"], 2)
    first, second = receiver.events(paid["reference"])
    assert first.body == second.body
    assert first.headers["x-paystack-signature"] == second.headers["x-paystack-signature"]
    with pytest.raises(httpx.HTTPStatusError):
        await sandbox.redeliver(987654321)


async def test_the_rules_control(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/_sandbox/rules", json={"kind": "transfer", "answer": "otp", "times": 2}
    )
    assert created.status_code == 201
    listed = (await client.get("/_sandbox/rules")).json()["data"]
    assert [(r["id"], r["kind"], r["answer"], r["remaining"]) for r in listed] == [
        (created.json()["id"], "transfer", "otp", 2)
    ]
    bad = await client.post("/_sandbox/rules", json={"kind": "nonsense"})
    assert bad.status_code == 422
    bad = await client.post("/_sandbox/rules", json={"kind": "webhook", "delivery": "sometimes"})
    assert bad.status_code == 422
    assert (await client.delete("/_sandbox/rules")).status_code == 204
    assert (await client.get("/_sandbox/rules")).json()["data"] == []
