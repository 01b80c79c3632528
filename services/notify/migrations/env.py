from sqlmodel import SQLModel

import notify.models  # noqa: F401 - registers the tables
from krika_common.migrations import run_migrations
from notify.config import Settings

run_migrations(SQLModel.metadata, Settings().database_url)
