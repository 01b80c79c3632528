"""The state machine, without a database: every state x action x role against a table written
out here (not derived from orders.states), and random action sequences (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.states import (
    FINAL,
    Action,
    OrderState,
    OrderStatus,
    Role,
    TransitionRefused,
    step,
    target,
)

P, PD, IP, D, C, X = "pending", "paid", "in_progress", "delivered", "completed", "cancelled"
CU, PR, AD, SY = "customer", "provider", "admin", "system"

# (from, action) -> (to, roles allowed). Every pair not listed is refused to everyone.
EXPECTED: dict[tuple[str, str], tuple[str, set[str]]] = {
    (P, "pay"): (PD, {SY}),
    (PD, "start"): (IP, {PR}),
    (IP, "deliver"): (D, {PR}),
    (D, "request_revision"): (IP, {CU}),
    (D, "complete"): (C, {CU}),
    (D, "auto_complete"): (C, {SY}),
    (P, "expire"): (X, {SY}),
    (P, "cancel"): (X, {CU, AD}),
    (PD, "cancel"): (X, {CU, PR, AD}),
    (IP, "cancel"): (X, {AD}),
    (D, "cancel"): (X, {AD}),
}

CASES = list(itertools.product(OrderStatus, Action, Role))


def test_the_table_covers_every_state_action_and_role() -> None:
    assert len(CASES) == 6 * 8 * 4
    assert {s.value for s in OrderStatus} == {P, PD, IP, D, C, X}
    assert {r.value for r in Role} == {CU, PR, AD, SY}


@pytest.mark.parametrize(("status", "action", "role"), CASES)
def test_every_transition_is_allowed_exactly_as_the_table_says(
    status: OrderStatus, action: Action, role: Role
) -> None:
    expected = EXPECTED.get((status.value, action.value))
    allowed = expected is not None and role.value in expected[1]
    state = OrderState(status, revisions_used=0, revisions_allowed=2)
    if allowed:
        assert expected is not None
        assert target(status, action, role) == expected[0]
        after = step(state, action, role)
        assert after.status == expected[0]
        used = 1 if action is Action.request_revision else 0
        assert after.revisions_used == used
    else:
        assert target(status, action, role) is None
        with pytest.raises(TransitionRefused):
            step(state, action, role)


def test_a_revision_needs_one_left() -> None:
    state = OrderState(OrderStatus.delivered, revisions_used=1, revisions_allowed=1)
    with pytest.raises(TransitionRefused, match="No revisions left"):
        step(state, Action.request_revision, Role.customer)
    none_at_all = OrderState(OrderStatus.delivered, revisions_used=0, revisions_allowed=0)
    with pytest.raises(TransitionRefused):
        step(none_at_all, Action.request_revision, Role.customer)


def test_final_states_allow_nothing() -> None:
    for status, action, role in CASES:
        if status in FINAL:
            assert target(status, action, role) is None


@settings(max_examples=300, deadline=None)
@given(
    allowed=st.integers(min_value=0, max_value=5),
    moves=st.lists(st.tuples(st.sampled_from(Action), st.sampled_from(Role)), max_size=60),
)
def test_random_sequences_stay_in_defined_states_within_the_revision_budget(
    allowed: int, moves: list[tuple[Action, Role]]
) -> None:
    state = OrderState(OrderStatus.pending, revisions_used=0, revisions_allowed=allowed)
    path = [state.status]
    for action, role in moves:
        try:
            after = step(state, action, role)
        except TransitionRefused:
            continue
        assert state.status not in FINAL, "a final state moved"
        assert (state.status.value, action.value) in EXPECTED
        state = after
        path.append(state.status)
        assert state.status in set(OrderStatus)
        assert 0 <= state.revisions_used <= state.revisions_allowed == allowed
    # Revisions counted are exactly the delivered -> in_progress moves taken.
    revisions = sum(
        1
        for a, b in itertools.pairwise(path)
        if (a, b) == (OrderStatus.delivered, OrderStatus.in_progress)
    )
    assert revisions == state.revisions_used
