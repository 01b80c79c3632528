"""`python -m chat`: the chat API and Socket.IO hub, with Krika's HTTP limits."""

from __future__ import annotations

from chat.app import asgi, create_app
from chat.config import Settings
from krika_common.server import serve


def main() -> None:
    settings = Settings()
    serve(asgi(create_app(settings)), settings)


if __name__ == "__main__":
    main()
