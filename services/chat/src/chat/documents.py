"""chat's MongoDB documents (Beanie): conversations, messages, attachments, known users.

Ids are UUID strings (the API's ids), stored as strings: plain BSON any MongoDB (and the
development Mongo-wire server) compares and indexes the same way. Times are UTC, cut to the
millisecond MongoDB keeps, so a value read back equals the one written (cursors rely on it).

Times that are compared, sorted or changed after the insert are epoch milliseconds (`*_ms`):
moved forward atomically (`$max`, conditional `$set`) and compared the same way by any MongoDB -
the development Mongo-wire server stores a datetime written by `$set` as text and does not
always compare datetimes in queries correctly.

A message is its own outbox: it is inserted with `pending_event` (the `chat.message_sent` to
publish) and the worker unsets it once the broker confirmed - one document, one atomic write,
no transaction needed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from beanie import Document
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def now_ms() -> datetime:
    """Now, in UTC, to the millisecond (what MongoDB stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class LastMessage(BaseModel):
    id: str
    sender_id: str
    body: str
    created_ms: int


class Conversation(Document):
    """Two or more participants; at most one per order (its customer and provider), and at
    most one direct conversation per pair of users without an order (`direct_key`)."""

    id: str = Field(default_factory=new_id)  # type: ignore[assignment]
    participant_ids: list[str]
    order_id: str | None = None
    # "<user>|<user>" (sorted) for a two-person conversation without an order.
    direct_key: str | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=now_ms)
    last_activity_ms: int = Field(default_factory=lambda: to_ms(now_ms()))
    last_message: LastMessage | None = None
    # Per participant: the newest message they have read, and its time.
    read_message: dict[str, str] = Field(default_factory=dict)
    read_ms: dict[str, int] = Field(default_factory=dict)

    class Settings:
        name = "conversations"
        indexes = [  # noqa: RUF012 - Beanie reads this class attribute
            IndexModel(
                [("order_id", ASCENDING)],
                name="one_per_order",
                unique=True,
                partialFilterExpression={"order_id": {"$type": "string"}},
            ),
            IndexModel(
                [("direct_key", ASCENDING)],
                name="one_direct_per_pair",
                unique=True,
                partialFilterExpression={"direct_key": {"$type": "string"}},
            ),
            IndexModel(
                [("participant_ids", ASCENDING), ("last_activity_ms", DESCENDING)],
                name="by_participant",
            ),
        ]


class AttachmentRef(BaseModel):
    """An attachment as its message keeps it: its storage key too, so a page of history signs
    its links without reading the attachments again."""

    id: str
    key: str
    content_type: str
    size: int


class Message(Document):
    id: str = Field(default_factory=new_id)  # type: ignore[assignment]
    conversation_id: str
    sender_id: str
    body: str
    attachments: list[AttachmentRef] = Field(default_factory=list)
    # The sender's own id for this message: a resend (after a reconnect) finds the first one.
    client_id: str | None = None
    created_ms: int = Field(default_factory=lambda: to_ms(now_ms()))
    # `chat.message_sent` still to publish (unset once published).
    pending_event: dict[str, Any] | None = None

    class Settings:
        name = "messages"
        indexes = [  # noqa: RUF012
            IndexModel(
                [("conversation_id", ASCENDING), ("created_ms", DESCENDING)],
                name="history",
            ),
            IndexModel(
                [
                    ("conversation_id", ASCENDING),
                    ("sender_id", ASCENDING),
                    ("client_id", ASCENDING),
                ],
                name="one_per_client_id",
                unique=True,
                partialFilterExpression={"client_id": {"$type": "string"}},
            ),
            IndexModel(
                [("pending_event", ASCENDING)],
                name="outbox",
                partialFilterExpression={"pending_event": {"$type": "object"}},
            ),
        ]

    @property
    def created_at(self) -> datetime:
        return from_ms(self.created_ms)


class Attachment(Document):
    """A file uploaded to a conversation, then named by one message (`message_id`)."""

    id: str = Field(default_factory=new_id)  # type: ignore[assignment]
    conversation_id: str
    uploaded_by: str
    key: str
    content_type: str
    size: int
    message_id: str | None = None
    created_at: datetime = Field(default_factory=now_ms)

    class Settings:
        name = "attachments"
        indexes = [IndexModel([("conversation_id", ASCENDING)], name="by_conversation")]  # noqa: RUF012


class ChatUser(Document):
    """A user identity told us about (`identity.user_registered`): who can be a participant."""

    id: str  # type: ignore[assignment]
    roles: list[str] = Field(default_factory=list)

    class Settings:
        name = "users"


DOCUMENTS: list[type[Document]] = [Conversation, Message, Attachment, ChatUser]
