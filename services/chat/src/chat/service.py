"""chat's use cases: conversations, messages, reads and attachments (MongoDB through Beanie).

Every function that takes a `caller` answers `ConversationNotFound` for a conversation the
caller is not in, exactly as for one that does not exist: outsiders learn nothing.
Delivering to sockets is the hub's job (chat.hub); these only store and answer.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from beanie import SortDirection
from pymongo.errors import DuplicateKeyError

from chat.config import Settings
from chat.documents import (
    Attachment,
    AttachmentRef,
    ChatUser,
    Conversation,
    LastMessage,
    Message,
    from_ms,
)
from chat.errors import (
    ClientIdReused,
    ConversationNotFound,
    EmptyMessage,
    InvalidAttachment,
    InvalidParticipants,
    MessageNotFound,
    MessageTooLong,
    OrderConversationNotReady,
    TooManyAttachments,
    TooManyParticipants,
    UnknownParticipant,
)
from chat.presence import Presence
from chat.schemas import (
    AttachmentOut,
    ConversationOut,
    LastMessageOut,
    MessageOut,
    PresenceOut,
    UploadedOut,
)
from krika_common.events import MessageSent
from krika_common.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from krika_common.storage import DOCUMENTS, Storage

log = logging.getLogger(__name__)

FILE_PREFIX = "attachments"
PREVIEW_CHARS = 200
NEWEST_ACTIVITY: list[tuple[str, SortDirection]] = [
    ("last_activity_ms", SortDirection.DESCENDING),
    ("_id", SortDirection.DESCENDING),
]
NEWEST_FIRST: list[tuple[str, SortDirection]] = [
    ("created_ms", SortDirection.DESCENDING),
    ("_id", SortDirection.DESCENDING),
]


@dataclass
class Chat:
    """What the use cases need (app.state.chat)."""

    settings: Settings
    storage: Storage
    presence: Presence


# --- conversations ------------------------------------------------------------------------------


async def conversation_for(caller: str, conversation_id: uuid.UUID | str) -> Conversation:
    """The conversation, if the caller is one of its participants."""
    conversation = await Conversation.find_one(
        {"_id": str(conversation_id), "participant_ids": caller}
    )
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def open_conversation(
    chat: Chat, caller: str, participant_ids: list[uuid.UUID], order_id: uuid.UUID | None
) -> tuple[Conversation, bool]:
    """(the conversation, whether it was created now). An order's conversation exists from its
    placement (orders.order_placed) and is only ever found here; a two-person conversation
    without an order is unique per pair; a bigger group is always new."""
    others = list(dict.fromkeys(str(p) for p in participant_ids if str(p) != caller))
    if order_id is not None:
        conversation = await Conversation.find_one({"order_id": str(order_id)})
        if conversation is None:
            raise OrderConversationNotReady()
        if caller not in conversation.participant_ids:
            raise ConversationNotFound()
        if not set(others) <= set(conversation.participant_ids):
            raise InvalidParticipants(
                "An order's conversation is only its customer's and provider's"
            )
        return conversation, False
    if not others:
        raise InvalidParticipants("Name at least one other participant")
    if len(others) + 1 > chat.settings.max_participants:
        raise TooManyParticipants(f"At most {chat.settings.max_participants} participants")
    known = {u.id for u in await ChatUser.find({"_id": {"$in": others}}).to_list()}
    if unknown := [p for p in others if p not in known]:
        raise UnknownParticipant(f"Unknown user: {unknown[0]}")
    participants = [caller, *others]
    direct_key = "|".join(sorted(participants)) if len(participants) == 2 else None
    if direct_key is not None:
        existing = await Conversation.find_one({"direct_key": direct_key})
        if existing is not None:
            return existing, False
    conversation = Conversation(
        participant_ids=participants, direct_key=direct_key, created_by=caller
    )
    try:
        await conversation.insert()
    except DuplicateKeyError:  # the same pair, at the same moment
        existing = await Conversation.find_one({"direct_key": direct_key})
        if existing is None:
            raise
        return existing, False
    return conversation, True


async def open_order_conversation(order_id: str, customer_id: str, provider_id: str) -> bool:
    """The order's conversation (from orders.order_placed); False when it already exists."""
    conversation = Conversation(
        participant_ids=list(dict.fromkeys([customer_id, provider_id])),
        order_id=order_id,
        created_by=None,
    )
    try:
        await conversation.insert()
    except DuplicateKeyError:
        return False
    return True


async def register_user(user_id: str, roles: list[str]) -> None:
    """Remember a user identity announced (identity.user_registered); a replay changes nothing."""
    await ChatUser.get_pymongo_collection().update_one(
        {"_id": user_id},
        {"$setOnInsert": {"roles": roles}},
        upsert=True,
    )


async def unread_count(caller: str, conversation: Conversation) -> int:
    read_ms = conversation.read_ms.get(caller)
    return await Message.find(
        {
            "conversation_id": conversation.id,
            "sender_id": {"$ne": caller},
            "created_ms": {"$gt": read_ms if read_ms is not None else -1},
        }
    ).count()


async def conversation_out(
    caller: str, conversation: Conversation, *, unread: bool = True
) -> ConversationOut:
    last = conversation.last_message
    return ConversationOut(
        id=uuid.UUID(conversation.id),
        participant_ids=[uuid.UUID(p) for p in conversation.participant_ids],
        order_id=uuid.UUID(conversation.order_id) if conversation.order_id else None,
        created_at=conversation.created_at,
        last_activity_at=from_ms(conversation.last_activity_ms),
        last_message=LastMessageOut(
            id=uuid.UUID(last.id),
            sender_id=uuid.UUID(last.sender_id),
            body=last.body,
            created_at=from_ms(last.created_ms),
        )
        if last
        else None,
        unread_count=await unread_count(caller, conversation) if unread else 0,
    )


def _after(cursor: str | None, time_field: str) -> dict[str, Any]:
    """The filter for rows after `cursor` = (epoch ms, id) in (time, id) descending order."""
    if cursor is None:
        return {}
    ms, last_id = decode_cursor(cursor, 2)
    try:
        uuid.UUID(last_id)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms < 2**53:
        raise InvalidCursor()
    return {
        "$or": [
            {time_field: {"$lt": ms}},
            {time_field: ms, "_id": {"$lt": last_id}},
        ]
    }


async def list_conversations(caller: str, cursor: str | None, limit: int) -> Page[ConversationOut]:
    """The caller's conversations, the most recently active first, with unread counts."""
    query = {"participant_ids": caller, **_after(cursor, "last_activity_ms")}
    rows = await Conversation.find(query).sort(NEWEST_ACTIVITY).limit(limit + 1).to_list()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [await conversation_out(caller, c) for c in rows]
    next_cursor = encode_cursor(rows[-1].last_activity_ms, rows[-1].id) if more else None
    return Page(items=items, next_cursor=next_cursor)


async def partners(user_id: str, limit: int) -> set[str]:
    """The users who share one of `user_id`'s `limit` most recent conversations."""
    rows = (
        await Conversation.find({"participant_ids": user_id})
        .sort(NEWEST_ACTIVITY)
        .limit(limit)
        .to_list()
    )
    return {p for c in rows for p in c.participant_ids} - {user_id}


async def presence_of(chat: Chat, caller: str, user_ids: list[uuid.UUID]) -> list[PresenceOut]:
    """Who of `user_ids` is online - told only of users who share a conversation with the
    caller (anyone else shows offline)."""
    wanted = list(dict.fromkeys(str(u) for u in user_ids))
    query = {"$and": [{"participant_ids": caller}, {"participant_ids": {"$in": wanted}}]}
    shared = await Conversation.find(query).to_list() if wanted else []
    visible = {p for c in shared for p in c.participant_ids if p in wanted} | (
        {caller} if caller in wanted else set()
    )
    online = await chat.presence.online(visible)
    return [PresenceOut(user_id=uuid.UUID(u), online=u in online) for u in wanted]


# --- messages -----------------------------------------------------------------------------------


def message_event(
    message: Message, conversation: Conversation, offline: set[str]
) -> dict[str, Any]:
    recipients = [p for p in conversation.participant_ids if p != message.sender_id]
    event = MessageSent(
        message_id=uuid.UUID(message.id),
        conversation_id=uuid.UUID(conversation.id),
        order_id=uuid.UUID(conversation.order_id) if conversation.order_id else None,
        sender_id=uuid.UUID(message.sender_id),
        recipient_ids=[uuid.UUID(r) for r in recipients],
        offline_recipient_ids=[uuid.UUID(r) for r in recipients if r in offline],
        preview=message.body[:PREVIEW_CHARS],
        attachment_count=len(message.attachments),
        sent_at=message.created_at,
    )
    return event.model_dump(mode="json")


async def post_message(
    chat: Chat,
    caller: str,
    conversation_id: uuid.UUID,
    body: str,
    attachment_ids: list[uuid.UUID],
    client_id: str | None,
) -> tuple[Message, Conversation, bool]:
    """Store a message: (it, its conversation, whether it is new). A resend with a `client_id`
    already used by the caller in this conversation answers the stored message (not new).
    The conversation's summary is the caller's to update after delivering (`record_activity`)."""
    settings = chat.settings
    conversation = await conversation_for(caller, conversation_id)
    if len(body) > settings.max_body_chars:
        raise MessageTooLong(f"At most {settings.max_body_chars} characters")
    attachments = list(dict.fromkeys(str(a) for a in attachment_ids))
    if len(attachments) > settings.max_attachments_per_message:
        raise TooManyAttachments(f"At most {settings.max_attachments_per_message} attachments")
    if not body.strip() and not attachments:
        raise EmptyMessage()
    message = Message(
        conversation_id=conversation.id, sender_id=caller, body=body, client_id=client_id
    )
    # A resend (same client_id) is found by the unique index, not by a look-up first: one round
    # trip less for every message.
    try:
        message.attachments = await _claim_attachments(
            conversation.id, caller, message.id, attachments
        )
    except InvalidAttachment:
        if client_id is not None and (
            found := await _by_client_id(conversation.id, caller, client_id)
        ):
            return _same_resend(found, body, attachments), conversation, False
        raise
    online = await chat.presence.online(conversation.participant_ids)
    message.pending_event = message_event(
        message, conversation, set(conversation.participant_ids) - online
    )
    try:
        await message.insert()
    except DuplicateKeyError:  # this client_id was used already: a resend
        await _release_attachments(message.id)
        existing = await _by_client_id(conversation.id, caller, client_id or "")
        if existing is None:
            raise
        return _same_resend(existing, body, attachments), conversation, False
    return message, conversation, True


async def _by_client_id(conversation_id: str, sender_id: str, client_id: str) -> Message | None:
    return await Message.find_one(
        {"conversation_id": conversation_id, "sender_id": sender_id, "client_id": client_id}
    )


def _same_resend(existing: Message, body: str, attachments: list[str]) -> Message:
    if existing.body != body or [a.id for a in existing.attachments] != attachments:
        raise ClientIdReused()
    return existing


async def _claim_attachments(
    conversation_id: str, caller: str, message_id: str, attachment_ids: list[str]
) -> list[AttachmentRef]:
    """Tie the caller's unsent uploads to the message; all of them or none."""
    refs: list[AttachmentRef] = []
    collection = Attachment.get_pymongo_collection()
    for attachment_id in attachment_ids:
        row = await collection.find_one_and_update(
            {
                "_id": attachment_id,
                "conversation_id": conversation_id,
                "uploaded_by": caller,
                "message_id": None,
            },
            {"$set": {"message_id": message_id}},
        )
        if row is None:
            await _release_attachments(message_id)
            raise InvalidAttachment(f"Attachment {attachment_id} cannot be sent")
        refs.append(
            AttachmentRef(
                id=row["_id"], key=row["key"], content_type=row["content_type"], size=row["size"]
            )
        )
    return refs


async def _release_attachments(message_id: str) -> None:
    await Attachment.get_pymongo_collection().update_many(
        {"message_id": message_id}, {"$set": {"message_id": None}}
    )


async def record_activity(conversation: Conversation, message: Message) -> None:
    """The conversation's last message and activity (never moved back by an older message), and
    the sender has read up to their own message."""
    at = message.created_ms
    last = LastMessage(
        id=message.id, sender_id=message.sender_id, body=message.body[:PREVIEW_CHARS], created_ms=at
    )
    collection = Conversation.get_pymongo_collection()
    await collection.update_one(
        {
            "_id": conversation.id,
            "$or": [{"last_message": None}, {"last_message.created_ms": {"$lte": at}}],
        },
        {"$set": {"last_message": last.model_dump()}, "$max": {"last_activity_ms": at}},
    )
    await _move_read(conversation.id, message.sender_id, message.id, at)
    conversation.last_message = last
    conversation.last_activity_ms = max(conversation.last_activity_ms, at)


async def _move_read(conversation_id: str, user_id: str, message_id: str, at: int) -> bool:
    """The user has read up to `message_id` (sent at `at` ms); never moves back. Whether it
    moved."""
    result = await Conversation.get_pymongo_collection().update_one(
        {
            "_id": conversation_id,
            "$or": [
                {f"read_ms.{user_id}": {"$exists": False}},
                {f"read_ms.{user_id}": {"$lt": at}},
            ],
        },
        {"$set": {f"read_ms.{user_id}": at, f"read_message.{user_id}": message_id}},
    )
    return result.modified_count > 0


async def mark_read(
    caller: str, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> tuple[Conversation, bool]:
    """The caller has read the conversation up to `message_id`: (it, whether that is news)."""
    conversation = await conversation_for(caller, conversation_id)
    message = await Message.find_one({"_id": str(message_id), "conversation_id": conversation.id})
    if message is None:
        raise MessageNotFound()
    moved = await _move_read(conversation.id, caller, message.id, message.created_ms)
    return conversation, moved


async def history(
    chat: Chat, caller: str, conversation_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[MessageOut]:
    """The conversation's messages, newest first."""
    conversation = await conversation_for(caller, conversation_id)
    query = {"conversation_id": conversation.id, **_after(cursor, "created_ms")}
    rows = await Message.find(query).sort(NEWEST_FIRST).limit(limit + 1).to_list()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [await message_out(chat, m) for m in rows]
    next_cursor = encode_cursor(rows[-1].created_ms, rows[-1].id) if more else None
    return Page(items=items, next_cursor=next_cursor)


async def message_out(chat: Chat, message: Message) -> MessageOut:
    ttl = timedelta(seconds=chat.settings.file_link_ttl)
    attachments = [
        AttachmentOut(
            id=uuid.UUID(ref.id),
            content_type=ref.content_type,
            size=ref.size,
            url=await chat.storage.signed_url(ref.key, ttl),
        )
        for ref in message.attachments
    ]
    return MessageOut(
        id=uuid.UUID(message.id),
        conversation_id=uuid.UUID(message.conversation_id),
        sender_id=uuid.UUID(message.sender_id),
        body=message.body,
        attachments=attachments,
        client_id=message.client_id,
        created_at=message.created_at,
    )


# --- attachments --------------------------------------------------------------------------------


async def add_attachment(
    chat: Chat, caller: str, conversation_id: uuid.UUID, data: bytes
) -> UploadedOut:
    """A participant uploads a file (an image or a PDF), then names it in one message. The file
    is stored first; if recording it fails, it is deleted again."""
    conversation = await conversation_for(caller, conversation_id)
    stored = await chat.storage.put(data, DOCUMENTS, prefix=FILE_PREFIX)  # 413/415/422 first
    attachment = Attachment(
        conversation_id=conversation.id,
        uploaded_by=caller,
        key=stored.key,
        content_type=stored.content_type,
        size=stored.size,
    )
    try:
        await attachment.insert()
    except BaseException:
        try:
            await chat.storage.delete(stored.key)
        except Exception:
            log.exception("could not delete the attachment file %s", stored.key)
        raise
    ttl = timedelta(seconds=chat.settings.file_link_ttl)
    return UploadedOut(
        id=uuid.UUID(attachment.id), url=await chat.storage.signed_url(stored.key, ttl)
    )
