"""kyc submissions and files

Revision ID: 3c5b948e7c8a
Revises: 9e4b7c2d1f60
Create Date: 2026-11-27 13:38:34

KYC: a provider's submissions (one pending or approved at a time) and their stored files.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '3c5b948e7c8a'
down_revision: str | None = '9e4b7c2d1f60'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('kyc_submissions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('legal_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('date_of_birth', sa.Date(), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('document_type', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], name=op.f('fk_kyc_submissions_decided_by_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_kyc_submissions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kyc_submissions'))
    )
    op.create_index('ix_kyc_submissions_queue', 'kyc_submissions', ['status', 'submitted_at', 'id'], unique=False)
    op.create_index(op.f('ix_kyc_submissions_user_id'), 'kyc_submissions', ['user_id'], unique=False)
    op.create_index('uq_kyc_submissions_open_per_user', 'kyc_submissions', ['user_id'], unique=True, postgresql_where=sa.text("status IN ('pending', 'approved')"))
    op.create_table('kyc_files',
    sa.Column('submission_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['submission_id'], ['kyc_submissions.id'], name=op.f('fk_kyc_files_submission_id_kyc_submissions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('submission_id', 'kind', name=op.f('pk_kyc_files')),
    sa.UniqueConstraint('key', name=op.f('uq_kyc_files_key'))
    )


def downgrade() -> None:
    op.drop_table('kyc_files')
    op.drop_index('uq_kyc_submissions_open_per_user', table_name='kyc_submissions', postgresql_where=sa.text("status IN ('pending', 'approved')"))
    op.drop_index(op.f('ix_kyc_submissions_user_id'), table_name='kyc_submissions')
    op.drop_index('ix_kyc_submissions_queue', table_name='kyc_submissions')
    op.drop_table('kyc_submissions')
