"""The order lifecycle: who may do what, from which state. Pure: no I/O.

    pending ──pay──▶ paid ──start──▶ in_progress ──deliver──▶ delivered ──complete──▶ completed
       │               │                  ▲                       │   (auto_complete: system)
       │               │                  └──request_revision─────┘   (at most the package's
       │               │                                                  revisions)
       └──cancel/expire┴──cancel──▶ cancelled  (and admin: cancel from any non-final state)

| action           | from        | to          | roles                     |
|------------------|-------------|-------------|---------------------------|
| pay              | pending     | paid        | system (payment event)    |
| start            | paid        | in_progress | provider                  |
| deliver          | in_progress | delivered   | provider                  |
| request_revision | delivered   | in_progress | customer (revisions left) |
| complete         | delivered   | completed   | customer                  |
| auto_complete    | delivered   | completed   | system (timer)            |
| expire           | pending     | cancelled   | system (timer)            |
| cancel           | pending     | cancelled   | customer, admin           |
| cancel           | paid        | cancelled   | customer, provider, admin |
| cancel           | in_progress | cancelled   | admin                     |
| cancel           | delivered   | cancelled   | admin                     |

completed and cancelled are final. A cancellation of a paid order is refunded by payments
(orders.order_cancelled carries `paid`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class OrderStatus(StrEnum):
    pending = "pending"
    paid = "paid"
    in_progress = "in_progress"
    delivered = "delivered"
    completed = "completed"
    cancelled = "cancelled"


class Role(StrEnum):
    customer = "customer"
    provider = "provider"
    admin = "admin"
    system = "system"


class Action(StrEnum):
    pay = "pay"
    start = "start"
    deliver = "deliver"
    request_revision = "request_revision"
    complete = "complete"
    auto_complete = "auto_complete"
    expire = "expire"
    cancel = "cancel"


FINAL = frozenset({OrderStatus.completed, OrderStatus.cancelled})

S, R = OrderStatus, Role
# action -> from status -> (to status, roles allowed)
TRANSITIONS: dict[Action, dict[OrderStatus, tuple[OrderStatus, frozenset[Role]]]] = {
    Action.pay: {S.pending: (S.paid, frozenset({R.system}))},
    Action.start: {S.paid: (S.in_progress, frozenset({R.provider}))},
    Action.deliver: {S.in_progress: (S.delivered, frozenset({R.provider}))},
    Action.request_revision: {S.delivered: (S.in_progress, frozenset({R.customer}))},
    Action.complete: {S.delivered: (S.completed, frozenset({R.customer}))},
    Action.auto_complete: {S.delivered: (S.completed, frozenset({R.system}))},
    Action.expire: {S.pending: (S.cancelled, frozenset({R.system}))},
    Action.cancel: {
        S.pending: (S.cancelled, frozenset({R.customer, R.admin})),
        S.paid: (S.cancelled, frozenset({R.customer, R.provider, R.admin})),
        S.in_progress: (S.cancelled, frozenset({R.admin})),
        S.delivered: (S.cancelled, frozenset({R.admin})),
    },
}


class TransitionRefused(Exception):
    """The state, the actor's role or the revision budget does not allow the action."""


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the rules look at: the status and the revision budget."""

    status: OrderStatus
    revisions_used: int = 0
    revisions_allowed: int = 0


def allowed_roles(status: OrderStatus, action: Action) -> frozenset[Role]:
    """The roles that may take `action` from `status` (empty: nobody)."""
    found = TRANSITIONS[action].get(status)
    return found[1] if found else frozenset()


def target(status: OrderStatus, action: Action, role: Role) -> OrderStatus | None:
    """The status `action` by `role` leads to from `status`, or None when not allowed (the
    revision budget aside: see `step`)."""
    found = TRANSITIONS[action].get(status)
    if found is None or role not in found[1]:
        return None
    return found[0]


def step(state: OrderState, action: Action, role: Role) -> OrderState:
    """The state after `action` by `role`, or TransitionRefused."""
    to = target(state.status, action, role)
    if to is None:
        raise TransitionRefused(f"{role} cannot {action} a {state.status} order")
    if action is Action.request_revision:
        if state.revisions_used >= state.revisions_allowed:
            raise TransitionRefused("No revisions left on this order")
        return replace(state, status=to, revisions_used=state.revisions_used + 1)
    return replace(state, status=to)
