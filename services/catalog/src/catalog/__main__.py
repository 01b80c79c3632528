"""`python -m catalog`: the catalog API with Krika's HTTP limits (krika_common.server)."""

from __future__ import annotations

from catalog.app import create_app
from catalog.config import Settings
from krika_common.server import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
