"""The event envelope and the versioned event-data models it carries.

An `EventData` subclass names its `event_type` and `event_version`; declaring one registers it,
so a consumer turns `envelope.data` back into the model with `Model.from_envelope(envelope)` or
`parse_event(envelope)`. Consumers ignore fields they do not know (`extra="ignore"`): adding a
field is compatible; removing or changing one is a new version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from krika_common.db import utcnow


class UnknownEvent(LookupError):
    """No model is registered for an envelope's (type, version)."""


class EventData(BaseModel):
    """Base of every event's payload; subclasses set `event_type` and `event_version`."""

    model_config = ConfigDict(extra="ignore")

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            _register(cls)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Self:
        """This model parsed from `envelope.data`; the envelope must be of this type and version."""
        if (envelope.type, envelope.version) != (cls.event_type, cls.event_version):
            raise UnknownEvent(
                f"{cls.__name__} is {cls.event_type} v{cls.event_version}, "
                f"not {envelope.type} v{envelope.version}"
            )
        return cls.model_validate(envelope.data)


_REGISTRY: dict[tuple[str, int], type[EventData]] = {}


def _register(model: type[EventData]) -> None:
    key = (model.event_type, model.event_version)
    known = _REGISTRY.get(key)
    same = known is not None and (known.__module__, known.__qualname__) == (
        model.__module__,
        model.__qualname__,
    )
    if known is not None and not same:
        raise TypeError(f"{key[0]} v{key[1]} is already defined by {known.__qualname__}")
    _REGISTRY[key] = model


def event_model(event_type: str, version: int) -> type[EventData]:
    try:
        return _REGISTRY[(event_type, version)]
    except KeyError:
        raise UnknownEvent(f"no model for {event_type} v{version}") from None


def parse_event(envelope: Envelope) -> EventData:
    """The registered model for the envelope's (type, version), validated from its data."""
    return event_model(envelope.type, envelope.version).model_validate(envelope.data)


class Envelope(BaseModel):
    """What travels on the bus; `id` is also the AMQP message_id and the inbox's dedup key."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    version: int = Field(ge=1)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    producer: str
    correlation_id: str | None = None
    data: dict[str, Any]

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def wrap(cls, data: EventData, *, producer: str, correlation_id: str | None = None) -> Envelope:
        return cls(
            type=data.event_type,
            version=data.event_version,
            producer=producer,
            correlation_id=correlation_id,
            data=data.model_dump(mode="json"),
        )
