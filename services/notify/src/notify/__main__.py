"""`python -m notify`: the notifications API with Krika's HTTP limits (krika_common.server)."""

from __future__ import annotations

from krika_common.server import serve
from notify.app import create_app
from notify.config import Settings


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
