"""Users, tokens and conversations for chat's tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from chat import service


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def key(self) -> str:
        return str(self.id)


async def user(
    mint_token: Callable[..., str], *roles: str, registered: bool = True, **claims: object
) -> User:
    """A user with a real token; `registered`: chat heard identity.user_registered for them."""
    user_id = uuid.uuid4()
    roles = roles or ("customer",)
    if registered:
        await service.register_user(str(user_id), list(roles))
    return User(user_id, mint_token(user_id, roles, **claims))


async def order_conversation(customer: User, provider: User) -> uuid.UUID:
    """An order whose conversation exists (as orders.order_placed makes it); the order id."""
    order_id = uuid.uuid4()
    assert await service.open_order_conversation(str(order_id), customer.key, provider.key)
    return order_id
