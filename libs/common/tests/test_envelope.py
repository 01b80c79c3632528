"""Envelope and versioned event schemas (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from krika_common.events import (
    EmailVerificationRequested,
    Envelope,
    EventData,
    PasswordResetRequested,
    UnknownEvent,
    UserRegistered,
    UserReinstated,
    UserRolesChanged,
    UserSuspended,
    event_model,
    parse_event,
)


def test_identity_event_survives_the_wire_and_parses_back_into_its_model() -> None:
    data = UserRegistered(
        user_id=uuid.uuid4(), email="ada@example.com", full_name="Ada", roles=["customer"]
    )
    sent = Envelope.wrap(data, producer="identity", correlation_id="req-1")

    received = Envelope.model_validate_json(sent.model_dump_json())

    assert received == sent
    assert (received.type, received.version, received.producer) == (
        "identity.user_registered",
        1,
        "identity",
    )
    assert received.correlation_id == "req-1"
    assert received.occurred_at.tzinfo is not None
    assert UserRegistered.from_envelope(received) == data
    assert parse_event(received) == data


def test_every_identity_event_is_registered_under_its_type_and_version() -> None:
    expected: dict[tuple[str, int], type[EventData]] = {
        ("identity.user_registered", 1): UserRegistered,
        ("identity.email_verification_requested", 2): EmailVerificationRequested,
        ("identity.password_reset_requested", 2): PasswordResetRequested,
        ("identity.user_suspended", 1): UserSuspended,
        ("identity.user_reinstated", 1): UserReinstated,
        ("identity.user_roles_changed", 1): UserRolesChanged,
    }
    for (event_type, version), model in expected.items():
        assert event_model(event_type, version) is model


def test_consumer_ignores_fields_it_does_not_know() -> None:
    user_id = uuid.uuid4()
    now = datetime.now(UTC)
    envelope = Envelope(
        type="identity.user_suspended",
        version=1,
        producer="identity",
        data={
            "user_id": str(user_id),
            "reason": None,
            "suspended_at": now.isoformat(),
            "added_in_a_later_release": 42,
        },
    )

    parsed = UserSuspended.from_envelope(envelope)

    assert parsed == UserSuspended(user_id=user_id, reason=None, suspended_at=now)


def test_unknown_type_or_version_is_refused() -> None:
    unknown = Envelope(type="identity.user_vanished", version=1, producer="x", data={})
    newer = Envelope(type="identity.user_registered", version=2, producer="x", data={})

    with pytest.raises(UnknownEvent):
        parse_event(unknown)
    with pytest.raises(UnknownEvent):
        parse_event(newer)
    with pytest.raises(UnknownEvent):
        UserRegistered.from_envelope(newer)


def test_occurred_at_is_aware_and_normalised_to_utc() -> None:
    lagos = timezone(timedelta(hours=1))
    local = datetime(2025, 1, 1, 13, 0, tzinfo=lagos)

    envelope = Envelope(type="a.b", version=1, producer="x", data={}, occurred_at=local)

    assert envelope.occurred_at == local
    assert envelope.occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        Envelope(type="a.b", version=1, producer="x", data={}, occurred_at=datetime(2025, 1, 1))


def test_a_second_model_for_the_same_type_and_version_is_refused() -> None:
    with pytest.raises(TypeError, match="already defined"):

        class Impostor(EventData):
            event_type = "identity.user_registered"
            event_version = 1
