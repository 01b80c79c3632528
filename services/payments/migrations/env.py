import payments.models  # noqa: F401 - registers the tables
from payments.config import Settings
from sqlmodel import SQLModel

from krika_common.migrations import run_migrations

run_migrations(SQLModel.metadata, Settings().database_url)
