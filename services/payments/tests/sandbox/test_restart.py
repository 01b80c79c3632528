"""The sandbox's state lives in its database: a restart keeps transactions, recipients,
transfers, refunds, the balance, rules, the webhook URL and undelivered webhooks (which
resume). On SQLite by default and on PostgreSQL."""

from __future__ import annotations

import uuid

import httpx

from krika_common.testing import eventually
from krika_common.testing.databases import create_database, drop_database
from krika_common.testing.http import serving
from payments.sandbox.testing import Sandbox, running_sandbox

from .factories import initialize, paid_transaction, recipient, reference, transfer
from .receiver import Receiver


async def _survives_a_restart(sandbox: Sandbox) -> None:
    hooks = Receiver()
    async with serving(hooks.app()) as base_url:
        await sandbox.set_webhook_url(f"{base_url}/hooks/paystack")
        async with sandbox.client(timeout=10.0) as client:
            unpaid = await initialize(client)
            paid = await paid_transaction(sandbox, client, amount=400000)
            code = await recipient(client)
            await sandbox.rule(kind="transfer", answer="otp")
            otp = (await transfer(client, code, amount=100000)).json()["data"]
            refund = (await client.post("/refund", json={"transaction": paid["reference"]})).json()
            # Held past the restart: it must still go out afterwards.
            late_ref = reference()
            await sandbox.rule(
                kind="webhook", event="charge.success", reference=late_ref, delivery="late",
                delay=2.5,
            )  # fmt: skip
            await paid_transaction(sandbox, client, reference=late_ref)
            await sandbox.rule(kind="charge", amount=123)
            assert len(await sandbox.deliveries(reference=late_ref)) == 1
            await sandbox.set_balance(9_000_000)

        sandbox.restart()

        async with sandbox.client(timeout=10.0) as client:
            verified = await client.get(f"/transaction/verify/{unpaid['reference']}")
            assert verified.json()["data"]["status"] == "abandoned"
            again = await client.get(f"/transaction/verify/{paid['reference']}")
            assert again.json()["data"]["amount"] == 400000
            assert await sandbox.balance() == 9_000_000
            assert (await recipient(client)) == code
            rules = (await client.get("/_sandbox/rules")).json()["data"]
            assert [(r["kind"], r["amount"]) for r in rules] == [("charge", 123)]
            # The OTP transfer can still be finalized, and then settles.
            finalized = await client.post(
                "/transfer/finalize_transfer",
                json={"transfer_code": otp["transfer_code"], "otp": "123456"},
            )
            assert finalized.status_code == 200

            async def settled() -> bool:
                return bool(hooks.events(otp["reference"], "transfer.success")) and bool(
                    hooks.events(late_ref, "charge.success")
                )

            await eventually(settled, within=10, what="webhooks after the restart")
            fetched = await client.get(f"/refund/{refund['data']['id']}")
            assert fetched.json()["data"]["status"] == "processed"
            assert hooks.events(paid["reference"], "refund.processed")


async def test_state_survives_a_restart_on_sqlite() -> None:
    with running_sandbox() as sandbox:
        await _survives_a_restart(sandbox)


async def test_state_survives_a_restart_on_postgresql(postgres_server_url: str) -> None:
    name = f"paystack_sandbox_{uuid.uuid4().hex[:12]}"
    url = await create_database(postgres_server_url, name)
    try:
        with running_sandbox(database_url=url) as sandbox:
            await _survives_a_restart(sandbox)
    finally:
        await drop_database(postgres_server_url, name)


async def test_pending_deliveries_resume_after_a_restart() -> None:
    """A delivery still being retried when the sandbox stops is sent after it starts."""
    hooks = Receiver(statuses=[500])
    with running_sandbox(webhook_retry_base=3.0) as sandbox:
        async with serving(hooks.app()) as base_url, sandbox.client() as client:
            await sandbox.set_webhook_url(f"{base_url}/hooks/paystack")
            paid = await paid_transaction(sandbox, client)

            async def refused_once() -> bool:
                found = await sandbox.deliveries(reference=paid["reference"])
                return bool(found[0]["attempts"] == 1)

            await eventually(refused_once, what="a refused first attempt")
            sandbox.restart()

            async def delivered() -> bool:
                found = await sandbox.deliveries(reference=paid["reference"])
                return bool(found[0]["status"] == "delivered")

            await eventually(delivered, within=10, what="delivered after the restart")
            assert len(hooks.events(paid["reference"])) == 2


def test_a_sandbox_is_stopped_at_the_end() -> None:
    with running_sandbox() as sandbox:
        base_url = sandbox.base_url
        assert httpx.get(f"{base_url}/healthz").status_code == 200
    try:
        httpx.get(f"{base_url}/healthz", timeout=1.0)
    except httpx.HTTPError:
        return
    raise AssertionError("the sandbox still answers after running_sandbox ended")
