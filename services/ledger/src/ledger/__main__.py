"""`python -m ledger`: the wallet and ledger API with Krika's HTTP limits (krika_common.server)."""

from __future__ import annotations

from krika_common.server import serve
from ledger.app import create_app
from ledger.config import Settings


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
