"""Chat routes: parse, authorise, call the use case, answer (and deliver through the hub).

Every route but the signed file link needs a token; a conversation the caller is not in is 404,
as for one that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile, status

from chat import service
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
from chat.hub import MESSAGES, Hub
from chat.schemas import (
    ConversationIn,
    ConversationOut,
    MessageIn,
    MessageOut,
    PresenceIn,
    PresenceOut,
    ReadIn,
    ReadOut,
    UploadedOut,
)
from krika_common.auth import CurrentUser
from krika_common.errors import NotFound, responses
from krika_common.pagination import InvalidCursor, Page
from krika_common.schemas import Line
from krika_common.storage import UPLOAD_ERRORS, LinkInvalid, link_response


def get_chat(request: Request) -> service.Chat:
    found: service.Chat = request.app.state.chat
    return found


def get_hub(request: Request) -> Hub:
    found: Hub = request.app.state.hub
    return found


ChatDep = Annotated[service.Chat, Depends(get_chat)]
HubDep = Annotated[Hub, Depends(get_hub)]
Limit = Annotated[int, Query(ge=1, le=50)]
Cursor = Annotated[Line | None, Query(max_length=500)]

chat = APIRouter(prefix="/chat", tags=["chat"])


@chat.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationOut,
    responses={
        200: {"description": "The conversation already existed", "model": ConversationOut},
        **responses(
            ConversationNotFound,
            OrderConversationNotReady,
            UnknownParticipant,
            InvalidParticipants,
            TooManyParticipants,
        ),
    },
)
async def open_conversation(
    body: ConversationIn, user: CurrentUser, deps: ChatDep, response: Response
) -> ConversationOut:
    """Open a conversation with `participant_ids` (the caller is added), or find the one that
    exists: an order's (its customer and provider only), or a two-person one (200)."""
    me = str(user.id)
    conversation, created = await service.open_conversation(
        deps, me, body.participant_ids, body.order_id
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return await service.conversation_out(me, conversation)


@chat.get(
    "/conversations", response_model=Page[ConversationOut], responses=responses(InvalidCursor)
)
async def list_conversations(
    user: CurrentUser, cursor: Cursor = None, limit: Limit = 20
) -> Page[ConversationOut]:
    """The caller's conversations, the most recently active first, with unread counts."""
    return await service.list_conversations(str(user.id), cursor, limit)


@chat.get(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses=responses(ConversationNotFound),
)
async def get_conversation(conversation_id: uuid.UUID, user: CurrentUser) -> ConversationOut:
    """One of the caller's conversations."""
    me = str(user.id)
    return await service.conversation_out(me, await service.conversation_for(me, conversation_id))


@chat.get(
    "/conversations/{conversation_id}/messages",
    response_model=Page[MessageOut],
    responses=responses(ConversationNotFound, InvalidCursor),
)
async def list_messages(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    deps: ChatDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[MessageOut]:
    """The conversation's history, newest first (attachment links valid for minutes)."""
    return await service.history(deps, str(user.id), conversation_id, cursor, limit)


@chat.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={
        200: {"description": "A resend of a stored message (same client_id)", "model": MessageOut},
        **responses(
            ConversationNotFound,
            MessageTooLong,
            EmptyMessage,
            TooManyAttachments,
            InvalidAttachment,
            ClientIdReused,
        ),
    },
)
async def post_message(
    conversation_id: uuid.UUID,
    body: MessageIn,
    user: CurrentUser,
    deps: ChatDep,
    hub: HubDep,
    response: Response,
) -> MessageOut:
    """Send a message: stored once per `client_id`, then pushed to every participant's open
    connections (a resend answers 200 with the stored message and pushes nothing)."""
    message, conversation, new = await service.post_message(
        deps, str(user.id), conversation_id, body.body, body.attachment_ids, body.client_id
    )
    if not new:
        response.status_code = status.HTTP_200_OK
        return await service.message_out(deps, message)
    MESSAGES.labels("rest").inc()
    return MessageOut.model_validate(await hub.deliver_message(message, conversation, None))


@chat.post(
    "/conversations/{conversation_id}/read",
    response_model=ReadOut,
    responses=responses(ConversationNotFound, MessageNotFound),
)
async def mark_read(
    conversation_id: uuid.UUID, body: ReadIn, user: CurrentUser, hub: HubDep
) -> ReadOut:
    """The caller has read up to `message_id` (never moves back); the participants get `read`."""
    me = str(user.id)
    conversation, moved = await service.mark_read(me, conversation_id, body.message_id)
    read = ReadOut(conversation_id=conversation_id, message_id=body.message_id, user_id=user.id)
    if moved:
        await hub.to_users("read", read.model_dump(mode="json"), conversation.participant_ids)
    return read


@chat.post(
    "/conversations/{conversation_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadedOut,
    responses=responses(ConversationNotFound, *UPLOAD_ERRORS),
)
async def upload_attachment(
    conversation_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="An image (JPEG, PNG, WebP) or a PDF, ≤ 10 MiB")],
    user: CurrentUser,
    deps: ChatDep,
) -> UploadedOut:
    """A participant uploads a file, then names it in one message's `attachment_ids`."""
    return await service.add_attachment(deps, str(user.id), conversation_id, await file.read())


@chat.post("/presence", response_model=Page[PresenceOut])
async def presence(body: PresenceIn, user: CurrentUser, deps: ChatDep) -> Page[PresenceOut]:
    """Who is online among `user_ids` (only users who share a conversation with the caller
    are shown as they are; anyone else shows offline). A POST: up to 100 ids do not fit a URL."""
    return Page(items=await service.presence_of(deps, str(user.id), body.user_ids))


@chat.get(
    "/files/{folder}/{name}",
    response_class=Response,
    responses=responses(LinkInvalid, NotFound),
)
async def open_file(
    folder: Annotated[str, Path(max_length=64)],
    name: Annotated[str, Path(max_length=64)],
    deps: ChatDep,
    expires: Annotated[str, Query(max_length=12)] = "",
    sig: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """An attachment behind a signed link (what the local store's links point at)."""
    return link_response(*await deps.storage.open_link(f"{folder}/{name}", expires, sig))
