"""identity.user_suspended, consumed from the bus, makes the gateway refuse the user's tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from krika_common.events import Envelope, EventBus, UserSuspended
from krika_common.testing import eventually

from .conftest import StartGateway
from .upstreams import Upstreams


async def test_user_suspended_event_refuses_current_tokens(
    start_gateway: StartGateway,
    upstreams: Upstreams,
    mint_token: Callable[..., str],
    event_bus_factory: Callable[..., EventBus],
) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    token = mint_token(sub=user)
    headers = {"Authorization": f"Bearer {token}"}
    gateway_bus = event_bus_factory("gateway")
    publisher = event_bus_factory("identity")
    await publisher.connect()
    async with start_gateway(event_bus=gateway_bus) as client:
        assert (await client.get("/api/v1/orders", headers=headers)).status_code == 200
        await eventually(gateway_bus.is_consuming, what="the gateway consuming")

        event = UserSuspended(
            user_id=user, reason="fraud", suspended_at=datetime.now(UTC), token_version=1
        )
        await publisher.publish(Envelope.wrap(event, producer="identity"))

        async def refused() -> bool:
            response = await client.get("/api/v1/orders", headers=headers)
            return response.status_code == 403 and (response.json()["error"] == "account_suspended")

        await eventually(refused, what="the suspended user refused")
        other_token = mint_token(sub=other)
        response = await client.get(
            "/api/v1/orders", headers={"Authorization": f"Bearer {other_token}"}
        )
        assert response.status_code == 200
