"""`python -m gateway`: one uvicorn server on the public port and the operations port.

Both listeners share the app, its lifespan and Krika's HTTP limits (krika_common.server); the
app tells them apart by the local port (see `GatewayMiddleware`).
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from krika_common.server import uvicorn_options


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    return sock


def main() -> None:
    settings = Settings()
    config = uvicorn.Config(create_app(settings), **uvicorn_options(settings.http))
    server = uvicorn.Server(config)
    sockets = [listen(settings.host, settings.port), listen(settings.host, settings.ops_port)]
    asyncio.run(server.serve(sockets=sockets))


if __name__ == "__main__":
    main()
