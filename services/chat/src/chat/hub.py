"""The realtime hub: Socket.IO (protocol v5) at `/socket.io/`, over WebSocket only.

Connecting: the access token comes in the `Authorization` header (what the gateway sends) or
the `access_token` query parameter; it is verified here again (signature, expiry, the user's
access mark), then the connection joins its user's room `user:<id>`. Every event for a user is
emitted to the rooms of the users concerned, through Socket.IO's Redis manager, so it reaches
their connections on whichever replica holds them.

Client -> server events (each may ask for an ack):
- `message` {conversation_id, body, client_id, attachment_ids?} -> ack: the stored message;
- `typing` {conversation_id} -> the other participants get `typing` {conversation_id, user_id};
- `read` {conversation_id, message_id} -> every participant gets `read` {..., user_id}.
Server -> client: `message`, `typing`, `read`, `presence` {user_id, online}, `order_status`,
`notification` and `error` {error, detail}.

Refusals keep the connection open: an event refused (unknown event, malformed payload, a
conversation the user is not in, a body too long, rate limited) is answered in its ack when
the client asked for one, else with an `error` event. What ends a connection: flooding
(`socket_max_refusals` rate-limited events in a row), a packet over
`socket_max_packet_bytes`, more than `socket_max_queued_packets` waiting for a client that does
not read, an expired token, a suspended or revoked account (followed live on the access-mark
channel), or the user's `max_connections_per_user`.

Each connection's events are handled one at a time, in the order they came (a lock per
connection), in tasks of their own: Engine.IO keeps reading the connection meanwhile, so its
pings are answered even while storage is slow. At most `socket_max_in_flight` events of one
connection wait; beyond, an event is refused as `rate_limited` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import engineio
import socketio
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ValidationError

from chat import service
from chat.config import Settings
from chat.documents import Conversation, Message
from chat.errors import InvalidPayload, SocketRateLimited, UnknownEvent
from chat.schemas import SocketMessageIn, SocketReadIn, SocketTypingIn
from krika_common.access import AccessMarks, follow_marks, refusal
from krika_common.auth import InvalidToken, Principal, TokenVerifier, parse_bearer
from krika_common.errors import ServiceError, Unauthorized

log = logging.getLogger(__name__)

CONNECTIONS = Gauge("krika_chat_connections", "Open realtime connections on this replica")
EVENTS = Counter(
    "krika_chat_socket_events_total", "Events received from clients", ["event", "outcome"]
)
DISCONNECTS = Counter(
    "krika_chat_forced_disconnects_total", "Connections the server closed", ["reason"]
)
MESSAGES = Counter("krika_chat_messages_total", "Messages stored", ["via"])
SUMMARY_FAILURES = Counter(
    "krika_chat_summary_failures_total", "Messages whose conversation summary was not updated"
)

# Whether the event being handled asked for an ack (set per event; see SocketServer).
_wants_ack: contextvars.ContextVar[bool] = contextvars.ContextVar("wants_ack", default=False)


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class OutgoingQueue(asyncio.Queue[Any]):
    """A connection's packets waiting to be written, at most `limit`: a client that does not
    read is dropped - its queue emptied, its writer stopped and the connection closed at once -
    instead of being buffered for without bound. `put` never waits, so one slow client cannot
    hold up a fan-out to the others."""

    def __init__(self, server: EngineServer, limit: int) -> None:
        super().__init__()
        self.server = server
        self.limit = limit
        self.overflowed = False

    async def put(self, item: Any) -> None:
        if item is None:  # engine.io's "stop writing" sentinel
            self.put_nowait(item)
            return
        if self.overflowed:
            return
        if self.qsize() >= self.limit:
            self.overflowed = True
            DISCONNECTS.labels("slow_consumer").inc()
            while not self.empty():
                self.get_nowait()
                self.task_done()
            self.put_nowait(None)
            await self.server.drop_socket_of(self)
            return
        self.put_nowait(item)


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *, max_queued_packets: int, **options: Any) -> None:
        self.max_queued_packets = max_queued_packets
        super().__init__(**options)

    def create_queue(self, *args: Any, **kwargs: Any) -> OutgoingQueue:
        return OutgoingQueue(self, self.max_queued_packets)

    async def drop_socket_of(self, queue: OutgoingQueue) -> None:
        """Close the connection whose queue overflowed (its disconnect handlers run now; the
        transport itself goes when its close frame cannot be written, after a timeout)."""
        for sid, engine_socket in list(self.sockets.items()):
            if engine_socket.queue is queue:
                log.info("dropping connection %s: it does not read what it is sent", sid)
                task = asyncio.ensure_future(
                    engine_socket.close(
                        wait=False, abort=True, reason=self.reason.SERVER_DISCONNECT
                    )
                )
                _background.add(task)
                task.add_done_callback(_background.discard)
                return


# Strong references to fire-and-forget tasks until they finish.
_background: set[asyncio.Task[Any]] = set()


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        _wants_ack.set(id is not None)
        await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)


@dataclass
class Connection:
    sid: str
    principal: Principal
    tokens: float
    refilled: float = field(default_factory=time.monotonic)
    refusals: int = 0
    expiry: asyncio.TimerHandle | None = None
    # One event at a time, in arrival order; how many are running or waiting.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0

    @property
    def user_id(self) -> str:
        return str(self.principal.id)


class Hub:
    """The Socket.IO server of one chat replica and what it knows of its own connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        manager = socketio.AsyncRedisManager(settings.redis_url, channel=settings.socketio_channel)
        self.sio = SocketServer(
            client_manager=manager,
            async_mode="asgi",
            transports=["websocket"],
            cors_allowed_origins=[],  # browsers' origins are the gateway's business
            async_handlers=True,  # serialised per connection by Connection.lock
            ping_interval=settings.socket_ping_interval,
            ping_timeout=settings.socket_ping_timeout,
            max_http_buffer_size=settings.socket_max_packet_bytes,
            max_queued_packets=settings.socket_max_queued_packets,
            logger=False,
            engineio_logger=False,
        )
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[str, set[str]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self._chat: service.Chat | None = None
        self._verifier: TokenVerifier | None = None
        self._marks: AccessMarks | None = None
        self._register()

    def asgi(self, other: Any) -> socketio.ASGIApp:
        """The ASGI app: Socket.IO at /socket.io/, everything else to `other` (the REST API)."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path="socket.io")

    async def start(self, chat: service.Chat, verifier: TokenVerifier, marks: AccessMarks) -> None:
        self._chat, self._verifier, self._marks = chat, verifier, marks
        self._spawn(self._heartbeat())
        self._spawn(
            follow_marks(self.settings.redis_url, lambda: self.by_user.keys(), self._mark_changed)
        )

    async def stop(self) -> None:
        for sid in list(self.connections):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        listener = getattr(self.sio.manager, "thread", None)
        if isinstance(listener, asyncio.Task):
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    @property
    def chat(self) -> service.Chat:
        assert self._chat is not None, "Hub.start() first"
        return self._chat

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- emitting (any replica's connections) ----------------------------------------------------

    async def to_users(
        self, event: str, data: Any, user_ids: list[str] | set[str], skip_sid: str | None = None
    ) -> None:
        rooms = [user_room(u) for u in sorted(user_ids)]
        if rooms:
            await self.sio.emit(event, data, to=rooms, skip_sid=skip_sid)

    async def deliver_message(
        self, message: Message, conversation: Conversation, skip_sid: str | None
    ) -> dict[str, Any]:
        """Send a stored message to every connection of every participant (not `skip_sid`,
        the connection that sent it: its ack carries it), then move the conversation's last
        message and the sender's read marker; the message as JSON. The message is stored and
        pushed before the summary: a failure there is logged, not the sender's error (the next
        message moves the summary on)."""
        out = (await service.message_out(self.chat, message)).model_dump(mode="json")
        await self.to_users("message", out, conversation.participant_ids, skip_sid=skip_sid)
        try:
            await service.record_activity(conversation, message)
        except Exception:
            SUMMARY_FAILURES.inc()
            log.exception("conversation %s: last message not recorded", conversation.id)
        return out

    # --- connections ---------------------------------------------------------------------------

    def _register(self) -> None:
        sio = self.sio
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)
        sio.on("message", self._guarded("message", SocketMessageIn, self._on_message))
        sio.on("typing", self._guarded("typing", SocketTypingIn, self._on_typing))
        sio.on("read", self._guarded("read", SocketReadIn, self._on_read))
        sio.on("*", self._unknown)

    async def _authenticate(self, environ: dict[str, Any]) -> Principal:
        header = environ.get("HTTP_AUTHORIZATION")
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        from_query = [v for k, v in pairs if k == "access_token"]
        if len(from_query) > 1 or (header and from_query and parse_bearer(header) != from_query[0]):
            raise InvalidToken("Two different access tokens")
        token = parse_bearer(header) if header else (from_query[0] if from_query else None)
        if not token:
            raise Unauthorized("Missing access token")
        assert self._verifier is not None
        assert self._marks is not None
        principal = await self._verifier.verify(token)
        await self._marks.check(principal, fail_closed=False)
        return principal

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if len(self.connections) >= self.settings.max_connections:
            raise _refused("server_busy", "This server is full; retry shortly")
        try:
            principal = await self._authenticate(environ)
        except ServiceError as exc:
            raise _refused(exc.code, str(exc.detail)) from None
        user = str(principal.id)
        count = await self.chat.presence.connected(user, sid)
        if count > self.settings.max_connections_per_user:
            await self.chat.presence.disconnected(user, sid)
            limit = self.settings.max_connections_per_user
            raise _refused("too_many_connections", f"At most {limit} connections")
        connection = Connection(sid, principal, tokens=float(self.settings.socket_event_burst))
        delay = max(0.0, principal.expires_at - time.time())
        connection.expiry = asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self.drop(sid, "token_expired"))
        )
        self.connections[sid] = connection
        self.by_user.setdefault(user, set()).add(sid)
        CONNECTIONS.set(len(self.connections))
        await self.sio.enter_room(sid, user_room(user))
        if count == 1:
            self._spawn(self._announce(user, online=True))

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.connections.pop(sid, None)
        if connection is None:
            return
        CONNECTIONS.set(len(self.connections))
        if connection.expiry is not None:
            connection.expiry.cancel()
        user = connection.user_id
        sids = self.by_user.get(user)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.by_user[user]
        try:
            remaining = await self.chat.presence.disconnected(user, sid)
        except Exception as exc:  # Redis away: the entry expires after presence_ttl
            log.warning("presence not updated on disconnect (%s)", type(exc).__name__)
            return
        if remaining == 0:
            self._spawn(self._announce(user, online=False))

    async def drop(self, sid: str, code: str, detail: str | None = None) -> None:
        """Tell the connection why (`error`), then close it."""
        if sid not in self.connections:
            return
        DISCONNECTS.labels(code).inc()
        with contextlib.suppress(Exception):
            await self.sio.emit(
                "error", {"error": code, "detail": detail or code.replace("_", " ")}, to=sid
            )
        await self.sio.disconnect(sid)

    async def _mark_changed(self, user_id: str, version: int | None, suspended: bool) -> None:
        for sid in list(self.by_user.get(user_id, ())):
            connection = self.connections.get(sid)
            if connection is None:
                continue
            error = refusal(version, suspended, connection.principal.token_version)
            if error is not None:
                await self.drop(sid, error.code, str(error.detail))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_heartbeat)
            try:
                await self.chat.presence.refresh(
                    (c.user_id, s) for s, c in self.connections.items()
                )
            except Exception as exc:
                log.warning("presence heartbeat failed (%s)", type(exc).__name__)

    async def _announce(self, user_id: str, *, online: bool) -> None:
        try:
            partners = await service.partners(user_id, self.settings.presence_fanout_conversations)
            await self.to_users("presence", {"user_id": user_id, "online": online}, partners)
        except Exception:
            log.exception("presence of %s not announced", user_id)

    # --- events ---------------------------------------------------------------------------------

    def _take_token(self, connection: Connection) -> bool:
        now = time.monotonic()
        settings = self.settings
        connection.tokens = min(
            float(settings.socket_event_burst),
            connection.tokens + (now - connection.refilled) * settings.socket_event_rate,
        )
        connection.refilled = now
        if connection.tokens < 1:
            return False
        connection.tokens -= 1
        return True

    async def _refuse(self, sid: str, error: ServiceError) -> dict[str, Any] | None:
        body = {"error": error.code, "detail": error.detail}
        if _wants_ack.get():
            return body
        await self.sio.emit("error", body, to=sid)
        return None

    def _guarded(
        self,
        event: str,
        model: type[BaseModel],
        handler: Callable[[Connection, Any], Awaitable[dict[str, Any] | None]],
    ) -> Callable[..., Awaitable[dict[str, Any] | None]]:
        async def handle(sid: str, data: Any = None, *extra: Any) -> dict[str, Any] | None:
            connection = self.connections.get(sid)
            if connection is None:
                return None
            if (
                not self._take_token(connection)
                or connection.in_flight >= self.settings.socket_max_in_flight
            ):
                connection.refusals += 1
                EVENTS.labels(event, "rate_limited").inc()
                if connection.refusals >= self.settings.socket_max_refusals:
                    await self.drop(sid, "rate_limited", "Too many events: disconnected")
                    return None
                return await self._refuse(sid, SocketRateLimited())
            connection.refusals = 0
            connection.in_flight += 1
            try:
                async with connection.lock:
                    return await self._handle(event, model, handler, connection, data, extra)
            finally:
                connection.in_flight -= 1

        return handle

    async def _handle(
        self,
        event: str,
        model: type[BaseModel],
        handler: Callable[[Connection, Any], Awaitable[dict[str, Any] | None]],
        connection: Connection,
        data: Any,
        extra: tuple[Any, ...],
    ) -> dict[str, Any] | None:
        sid = connection.sid
        try:
            if extra or not isinstance(data, dict):
                raise InvalidPayload("The payload must be one JSON object")
            try:
                payload = model.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                raise InvalidPayload(f"{where}: {first['msg']}") from None
            result = await handler(connection, payload)
        except ServiceError as exc:
            EVENTS.labels(event, exc.code).inc()
            return await self._refuse(sid, exc)
        except Exception:
            log.exception("socket event %s failed", event)
            EVENTS.labels(event, "internal_error").inc()
            return await self._refuse(sid, _Internal())
        EVENTS.labels(event, "ok").inc()
        return result

    async def _unknown(self, event: str, sid: str, *data: Any) -> dict[str, Any] | None:
        connection = self.connections.get(sid)
        if connection is None:
            return None
        if not self._take_token(connection):
            connection.refusals += 1
            if connection.refusals >= self.settings.socket_max_refusals:
                await self.drop(sid, "rate_limited", "Too many events: disconnected")
                return None
            return await self._refuse(sid, SocketRateLimited())
        EVENTS.labels("unknown", "unknown_event").inc()
        return await self._refuse(sid, UnknownEvent(f"Unknown event: {event[:64]}"))

    async def _on_message(self, connection: Connection, payload: SocketMessageIn) -> dict[str, Any]:
        message, conversation, new = await service.post_message(
            self.chat,
            connection.user_id,
            payload.conversation_id,
            payload.body,
            payload.attachment_ids,
            payload.client_id,
        )
        if not new:
            out = await service.message_out(self.chat, message)
            return out.model_dump(mode="json")
        MESSAGES.labels("socket").inc()
        return await self.deliver_message(message, conversation, skip_sid=connection.sid)

    async def _on_typing(self, connection: Connection, payload: SocketTypingIn) -> dict[str, Any]:
        conversation = await service.conversation_for(connection.user_id, payload.conversation_id)
        typing = {"conversation_id": conversation.id, "user_id": connection.user_id}
        others = set(conversation.participant_ids) - {connection.user_id}
        await self.to_users("typing", typing, others)
        return {"ok": True}

    async def _on_read(self, connection: Connection, payload: SocketReadIn) -> dict[str, Any]:
        user = connection.user_id
        conversation, moved = await service.mark_read(
            user, payload.conversation_id, payload.message_id
        )
        read = {
            "conversation_id": conversation.id,
            "message_id": str(payload.message_id),
            "user_id": user,
        }
        if moved:
            await self.to_users("read", read, conversation.participant_ids, skip_sid=connection.sid)
        return read


def _refused(code: str, detail: str) -> socketio.exceptions.ConnectionRefusedError:
    """A refused connection: Socket.IO's CONNECT_ERROR carries `message` (the code, what a
    client's `connect_error` handler sees as `err.message`) and `data` {error, detail}."""
    return socketio.exceptions.ConnectionRefusedError(code, {"error": code, "detail": detail})


class _Internal(ServiceError):
    status = 500
    code = "internal_error"
    message = "Something went wrong; retry"
