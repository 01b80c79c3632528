from sqlmodel import SQLModel

import catalog.models  # noqa: F401 - registers the tables
from catalog.config import Settings
from krika_common.migrations import run_migrations

run_migrations(SQLModel.metadata, Settings().database_url)
