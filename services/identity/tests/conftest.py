from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.app import create_app
from identity.config import Settings
from krika_common.testing.http import app_client
from krika_common.testing.storage import LINK_SECRET

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def alembic_ini() -> Path:
    return HERE.parent / "alembic.ini"


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The active signing key and a previous (rotated-out) one."""
    folder = tmp_path_factory.mktemp("keys")
    paths = []
    for name in ("active.pem", "previous.pem"):
        path = folder / name
        path.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="session")
def link_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """notify's link key (the private half; identity reads its public half from it)."""
    path = tmp_path_factory.mktemp("link") / "link.pem"
    path.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    return path


@pytest.fixture(scope="session")
def link_key(link_key_file: Path) -> ECKey:
    return ECKey.import_key(link_key_file.read_bytes())


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    key_files: tuple[Path, Path],
    link_key_file: Path,
    tmp_path: Path,
) -> Settings:
    return Settings(
        storage_url=f"file://{tmp_path / 'files'}",
        file_link_secret=LINK_SECRET.decode(),
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        signing_key_file=key_files[0],
        previous_key_files=[key_files[1]],
        link_key_file=link_key_file,
        token_pepper="test-pepper",
        edge_secret="test-edge-secret",
        # Cheap hashing keeps the suite fast; production cost is in Settings' defaults.
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        login_attempts_per_account_ip=5,
        login_attempts_per_account=12,
        login_attempts_per_ip=8,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest_asyncio.fixture
async def client(
    app: FastAPI, clean_db: AsyncEngine, redis_client: object
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as c:
        yield c
