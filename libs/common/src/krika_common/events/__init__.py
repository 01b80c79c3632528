"""Domain events: envelope and schemas, transactional outbox + relay, inbox, the RabbitMQ bus.

Producer: `await record_event(session, UserRegistered(...), producer="identity")` inside the
request's transaction; a worker runs `OutboxRelay(sessionmaker, bus).run()`.
Consumer: `bus.subscribe("identity.user_registered", inbox_handler(sessionmaker, "notify.welcome",
handler))`, `await bus.connect()`, `await bus.start()`; parse with `UserRegistered.from_envelope`.
"""

from krika_common.events.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    BrokerUnavailable,
    EventBus,
    EventHandler,
)
from krika_common.events.envelope import (
    Envelope,
    EventData,
    UnknownEvent,
    event_model,
    parse_event,
)
from krika_common.events.inbox import InboxMessage, TransactionalHandler, inbox_handler
from krika_common.events.outbox import (
    OutboxMessage,
    OutboxPublishFailed,
    OutboxRelay,
    record_event,
)
from krika_common.events.retention import prune_events, run_retention
from krika_common.events.schemas import (
    EmailVerificationRequested,
    PasswordResetRequested,
    UserRegistered,
    UserReinstated,
    UserRolesChanged,
    UserSuspended,
)

__all__ = [
    "ATTEMPT_HEADER",
    "ERROR_HEADER",
    "BrokerUnavailable",
    "EmailVerificationRequested",
    "Envelope",
    "EventBus",
    "EventData",
    "EventHandler",
    "InboxMessage",
    "OutboxMessage",
    "OutboxPublishFailed",
    "OutboxRelay",
    "PasswordResetRequested",
    "TransactionalHandler",
    "UnknownEvent",
    "UserRegistered",
    "UserReinstated",
    "UserRolesChanged",
    "UserSuspended",
    "event_model",
    "inbox_handler",
    "parse_event",
    "prune_events",
    "record_event",
    "run_retention",
]
