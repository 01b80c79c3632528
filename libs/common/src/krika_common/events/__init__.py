"""Domain events: envelope and schemas, transactional outbox + relay, inbox, the RabbitMQ bus.

Producer: `await record_event(session, UserRegistered(...), producer="identity")` inside the
request's transaction; a worker runs `OutboxRelay(sessionmaker, bus).run()`.
Consumer: an `InboxHandlers` registry (`@handlers.on(UserRegistered, consumer="notify.welcome")`),
`handlers.subscribe(bus, sessionmaker)`, `await bus.connect()`, `await bus.start()`; parse with
`UserRegistered.from_envelope`. Handlers without a database (idempotent by themselves, like the
gateway's access marks) use `bus.subscribe(event_type, handler)`.
"""

from krika_common.events.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    BatchHandler,
    BrokerUnavailable,
    Delivery,
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
from krika_common.events.inbox import InboxHandlers, InboxMessage, TransactionalHandler
from krika_common.events.outbox import (
    OutboxMessage,
    OutboxPublishFailed,
    OutboxRelay,
    record_event,
)
from krika_common.events.retention import prune_events, run_retention
from krika_common.events.schemas import (
    EmailVerificationRequested,
    KycApproved,
    KycRejected,
    KycSubmitted,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderStatusChanged,
    PackageSnapshot,
    PasswordResetRequested,
    PaymentFailed,
    PaymentSucceeded,
    PayoutAccountAdded,
    PayoutAccountRemoved,
    PayoutFailed,
    PayoutSucceeded,
    RefundFailed,
    RefundSucceeded,
    ReviewPosted,
    ServiceArchived,
    ServicePublished,
    ServiceUpdated,
    UserRegistered,
    UserReinstated,
    UserRolesChanged,
    UserSuspended,
    WithdrawalRequested,
)

__all__ = [
    "ATTEMPT_HEADER",
    "ERROR_HEADER",
    "BatchHandler",
    "BrokerUnavailable",
    "Delivery",
    "EmailVerificationRequested",
    "Envelope",
    "EventBus",
    "EventData",
    "EventHandler",
    "InboxHandlers",
    "InboxMessage",
    "KycApproved",
    "KycRejected",
    "KycSubmitted",
    "OrderCancelled",
    "OrderCompleted",
    "OrderPlaced",
    "OrderStatusChanged",
    "OutboxMessage",
    "OutboxPublishFailed",
    "OutboxRelay",
    "PackageSnapshot",
    "PasswordResetRequested",
    "PaymentFailed",
    "PaymentSucceeded",
    "PayoutAccountAdded",
    "PayoutAccountRemoved",
    "PayoutFailed",
    "PayoutSucceeded",
    "RefundFailed",
    "RefundSucceeded",
    "ReviewPosted",
    "ServiceArchived",
    "ServicePublished",
    "ServiceUpdated",
    "TransactionalHandler",
    "UnknownEvent",
    "UserRegistered",
    "UserReinstated",
    "UserRolesChanged",
    "UserSuspended",
    "WithdrawalRequested",
    "event_model",
    "parse_event",
    "prune_events",
    "record_event",
    "run_retention",
]
