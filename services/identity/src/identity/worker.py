"""`python -m identity.worker`: publishes identity's outbox to RabbitMQ and prunes old rows.

It serves /healthz, /readyz (database and broker) and /metrics (outbox lag) on
IDENTITY_WORKER_PORT so Swarm and Prometheus can watch it like any service. Retention
(krika_common.events.retention) deletes published outbox rows after
IDENTITY_OUTBOX_RETENTION_DAYS and inbox rows after IDENTITY_INBOX_RETENTION_DAYS.
"""

from __future__ import annotations

from fastapi import FastAPI

from identity.config import Settings
from krika_common.server import serve
from krika_common.worker import worker_app


def create_worker_app(settings: Settings | None = None) -> FastAPI:
    # identity consumes nothing: its worker relays the outbox and prunes.
    return worker_app(settings or Settings(), pool_size=2)


def main() -> None:
    settings = Settings()
    serve(
        create_worker_app(settings), settings, host=settings.worker_host, port=settings.worker_port
    )


if __name__ == "__main__":
    main()
