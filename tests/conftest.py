"""System tests: several Krika services running together on real sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return ROOT / "services" / "identity" / "alembic.ini"
