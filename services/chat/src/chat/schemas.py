"""Request and response bodies of chat's REST API and the payloads of its Socket.IO events."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# Hard caps on what a request may carry at all; the settings' limits (body length, attachments
# per message, participants) are checked by the service with their own error codes.
_MAX_LIST = 500
_MAX_TEXT = 100_000


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant_ids: list[uuid.UUID] = Field(default_factory=list, max_length=_MAX_LIST)
    order_id: uuid.UUID | None = None


class LastMessageOut(BaseModel):
    id: uuid.UUID
    sender_id: uuid.UUID
    body: str
    created_at: datetime


class ConversationOut(BaseModel):
    id: uuid.UUID
    participant_ids: list[uuid.UUID]
    order_id: uuid.UUID | None
    created_at: datetime
    last_activity_at: datetime
    last_message: LastMessageOut | None = None
    unread_count: int = 0


class AttachmentOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size: int
    url: str | None = Field(default=None, description="A download link, valid for minutes")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(default="", max_length=_MAX_TEXT)
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=_MAX_LIST)
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The client's id for this message: a resend with the same one is stored "
        "and delivered once",
    )


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    body: str
    attachments: list[AttachmentOut] = Field(default_factory=list)
    client_id: str | None = None
    created_at: datetime


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: uuid.UUID


class ReadOut(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    user_id: uuid.UUID


class UploadedOut(BaseModel):
    id: uuid.UUID
    url: str


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class PresenceOut(BaseModel):
    user_id: uuid.UUID
    online: bool


# --- Socket.IO client -> server payloads


class SocketMessageIn(MessageIn):
    conversation_id: uuid.UUID


class SocketTypingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: uuid.UUID


class SocketReadIn(ReadIn):
    conversation_id: uuid.UUID
