"""`python -m gateway`: one uvicorn server on the public port and the operations port.

Both listeners share the app, its lifespan and Krika's HTTP limits (krika_common.server); the
app tells them apart by the local port (see `GatewayMiddleware`).
"""

from __future__ import annotations

from gateway.app import create_app
from gateway.config import Settings
from krika_common.server import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, more_ports=(settings.ops_port,))


if __name__ == "__main__":
    main()
