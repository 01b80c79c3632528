"""outbox NOTIFY trigger: the relay is woken when events are committed instead of polling

Revision ID: 9e4b7c2d1f60
Revises: 5c1e0d7a9b3f
Create Date: 2026-11-27 12:00:00

The statements are krika_common.events.outbox.OUTBOX_NOTIFY_DDL, written out: a migration
does not change when the library does.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9e4b7c2d1f60"
down_revision: str | None = "5c1e0d7a9b3f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """CREATE OR REPLACE FUNCTION krika_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('krika_outbox', '');
    RETURN NULL;
END $$"""
    )
    op.execute(
        """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION krika_outbox_notify()"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION krika_outbox_notify()")
