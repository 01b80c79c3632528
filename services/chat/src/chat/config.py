"""Chat settings (env prefix CHAT_)."""

from __future__ import annotations

import re

from pydantic import Field

from krika_common.config import MIB, KrikaSettings, StorageSettings, service_config

# The one route that takes a big body: an attachment upload (DOCUMENTS.max_bytes) plus its
# multipart framing. Every other route keeps the 1 MiB default.
ATTACHMENT_UPLOAD_PATH = re.compile(r"^/chat/conversations/[^/]+/attachments$")


class Settings(StorageSettings, KrikaSettings):
    model_config = service_config("CHAT_")

    service_name: str = "chat"
    port: int = 8006
    storage_url: str = "file:///var/lib/krika/chat"
    # MongoDB (a replica set in production); development and tests use nx-27017.
    mongodb_url: str = "mongodb://127.0.0.1:27017"
    mongodb_database: str = "krika_chat"
    mongodb_timeout: float = Field(default=5.0, gt=0)
    mongodb_max_pool_size: int = Field(default=100, ge=1)

    # The worker's own /healthz, /readyz and /metrics.
    worker_host: str = "127.0.0.1"
    worker_port: int = 9006

    # --- content limits
    max_body_chars: int = Field(default=4000, ge=1, le=100_000)
    max_attachments_per_message: int = Field(default=10, ge=0, le=50)
    max_participants: int = Field(default=20, ge=2, le=500)
    attachment_upload_body_bytes: int = Field(default=11 * MIB, ge=MIB)

    # --- the realtime connection (Socket.IO over WebSocket only)
    # The largest Socket.IO packet a client may send; a bigger one ends the connection (a
    # message body over `max_body_chars` but under this gets an error and the socket stays).
    socket_max_packet_bytes: int = Field(default=64 * 1024, ge=4096)
    socket_ping_interval: float = Field(default=25.0, gt=0)
    socket_ping_timeout: float = Field(default=20.0, gt=0)
    # Events a connection may send: a bucket of `socket_event_burst` refilled at
    # `socket_event_rate` per second. Beyond it an event is refused (`rate_limited`); after
    # `socket_max_refusals` refusals in a row the connection is closed.
    socket_event_rate: float = Field(default=10.0, gt=0)
    socket_event_burst: int = Field(default=30, ge=1)
    socket_max_refusals: int = Field(default=20, ge=1)
    # Events of one connection being handled or waiting their turn (they run one at a time).
    socket_max_in_flight: int = Field(default=16, ge=1, le=1000)
    # Packets waiting for a client that does not read them; beyond, the connection is dropped
    # (a slow consumer cannot make the server buffer without bound).
    socket_max_queued_packets: int = Field(default=1000, ge=8)
    # Open connections per user (all replicas together), and per replica.
    max_connections_per_user: int = Field(default=10, ge=1)
    max_connections: int = Field(default=10_000, ge=1)
    # Presence: each replica refreshes its connections every `presence_heartbeat` seconds and a
    # connection not refreshed for `presence_ttl` (a replica that died) stops counting.
    presence_heartbeat: float = Field(default=15.0, gt=0)
    presence_ttl: float = Field(default=45.0, gt=0)
    # A user's partners told of presence changes: from their most recent conversations.
    presence_fanout_conversations: int = Field(default=200, ge=1)
    # The Redis channel Socket.IO's manager fans events out on (one per deployment).
    socketio_channel: str = "krika:chat:socketio"

    # --- the worker
    # How often the worker publishes messages' `chat.message_sent` (the messages' outbox).
    relay_interval: float = Field(default=1.0, gt=0)
    relay_batch: int = Field(default=200, ge=1, le=1000)
    # Pushes (order status, notifications) are de-duplicated by event id for this long.
    push_dedupe_seconds: int = Field(default=24 * 3600, ge=60)

    def secret_fields(self) -> dict[str, str]:
        return super().secret_fields() | self.storage_secrets()

    def body_limit_for(self, path: str) -> int:
        if ATTACHMENT_UPLOAD_PATH.match(path):
            return self.attachment_upload_body_bytes
        return self.http.body_limit(path)
