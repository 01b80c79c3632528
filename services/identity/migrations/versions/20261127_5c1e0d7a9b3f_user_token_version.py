"""users.token_version: the `ver` claim of access tokens, bumped when access changes

Revision ID: 5c1e0d7a9b3f
Revises: 1a0f1432155a
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0d7a9b3f"
down_revision: str | None = "1a0f1432155a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("users", "token_version")
