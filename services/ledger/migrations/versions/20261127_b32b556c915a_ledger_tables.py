"""ledger: accounts, journal_entries and postings (append-only: a trigger refuses UPDATE and
DELETE to anyone; the role krika_ledger_writer, which the service's login role is made a member
of, is granted SELECT and INSERT on them only), withdrawals, parked_events, read models
(ledger_orders, ledger_providers), idempotency_keys (krika_common.idempotency), outbox, inbox

The outbox NOTIFY trigger is krika_common.events.outbox.OUTBOX_NOTIFY_DDL, written out.
The service's login role is named by LEDGER_APP_ROLE in the migration's environment (e.g.
krika_ledger_app in production); when set, it is granted krika_ledger_writer.

Revision ID: b32b556c915a
Revises: 
Create Date: 2026-11-27 16:31:52.342662
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'b32b556c915a'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OUTBOX_NOTIFY = (
    """CREATE OR REPLACE FUNCTION krika_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('krika_outbox', '');
    RETURN NULL;
END $$""",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION krika_outbox_notify()""",
)



APPEND_ONLY = (
    """CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only (% refused); correct with a reversing entry',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""",
    """CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""",
)

# One entry in one round trip (ledger.journal.Journal.post): the entry (once per key and per
# pending entry), the guarded accounts' conditional UPDATEs in ascending id order (SQLSTATE
# KL001 names the one that would be overdrawn), and the postings.
POST_FUNCTION = """CREATE OR REPLACE FUNCTION ledger_post(
    p_key text, p_kind text, p_phase text, p_currency text, p_pending_id bigint,
    p_order_id uuid, p_withdrawal_id uuid, p_reference text, p_event_id uuid, p_at timestamptz,
    p_accounts bigint[], p_amounts bigint[], p_pending boolean[], p_guarded boolean[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    delta record;
BEGIN
    INSERT INTO journal_entries (key, kind, phase, pending_id, currency, amount, order_id,
                                 withdrawal_id, reference, event_id, created_at)
    VALUES (p_key, p_kind, p_phase, p_pending_id, p_currency,
            (SELECT coalesce(sum(a), 0) FROM unnest(p_amounts) AS a WHERE a > 0),
            p_order_id, p_withdrawal_id, p_reference, p_event_id, p_at)
    ON CONFLICT DO NOTHING
    RETURNING id INTO entry;
    IF entry IS NULL THEN
        RETURN NULL;
    END IF;
    FOR delta IN
        SELECT l.account_id,
               sum(CASE WHEN l.pending THEN l.amount ELSE 0 END) AS pending,
               sum(CASE WHEN NOT l.pending AND l.amount > 0 THEN l.amount ELSE 0 END) AS debits,
               sum(CASE WHEN NOT l.pending AND l.amount < 0 THEN -l.amount ELSE 0 END) AS credits
        FROM unnest(p_accounts, p_amounts, p_pending, p_guarded)
             AS l(account_id, amount, pending, guarded)
        WHERE l.guarded
        GROUP BY l.account_id
        ORDER BY l.account_id
    LOOP
        UPDATE accounts
        SET debits_pending = debits_pending + delta.pending,
            debits_posted = debits_posted + delta.debits,
            credits_posted = credits_posted + delta.credits
        WHERE id = delta.account_id
          AND debits_pending + delta.pending + debits_posted + delta.debits
              <= credits_posted + delta.credits;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger: account % would be overdrawn', delta.account_id
                USING ERRCODE = 'KL001', DETAIL = delta.account_id::text;
        END IF;
    END LOOP;
    INSERT INTO postings (entry_id, account_id, amount, pending, currency, created_at)
    SELECT entry, l.account_id, l.amount, l.pending, p_currency, p_at
    FROM unnest(p_accounts, p_amounts, p_pending) AS l(account_id, amount, pending);
    RETURN entry;
END $$"""

WRITER = "krika_ledger_writer"
GRANTS = (
    f"""DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER}') THEN
        CREATE ROLE {WRITER} NOLOGIN;
    END IF;
END $$""",
    f"GRANT SELECT, INSERT ON journal_entries, postings TO {WRITER}",
    f"GRANT SELECT, INSERT, UPDATE ON accounts, withdrawals, parked_events, ledger_orders, "
    f"ledger_providers TO {WRITER}",
    # The outbox relay marks rows published; retention deletes old outbox, inbox and keys.
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON outbox, inbox, idempotency_keys TO {WRITER}",
    f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {WRITER}",
)


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('guarded', sa.Boolean(), nullable=False),
    sa.Column('debits_pending', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('debits_posted', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('credits_posted', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('NOT guarded OR debits_pending + debits_posted <= credits_posted', name=op.f('ck_accounts_debits_must_not_exceed_credits')),
    sa.CheckConstraint('debits_pending >= 0 AND debits_posted >= 0 AND credits_posted >= 0', name=op.f('ck_accounts_totals_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('kind', 'owner_id', 'currency', name='uq_accounts_kind_owner_currency')
    )
    op.create_index('ix_accounts_owner', 'accounts', ['owner_id'], unique=False)
    op.create_index('ux_accounts_system', 'accounts', ['kind', 'currency'], unique=True, postgresql_where=sa.text('owner_id IS NULL'))
    op.create_table('idempotency_keys',
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_index(op.f('ix_idempotency_keys_created_at'), 'idempotency_keys', ['created_at'], unique=False)
    op.create_table('inbox',
    sa.Column('consumer', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_index(op.f('ix_inbox_received_at'), 'inbox', ['received_at'], unique=False)
    op.create_table('journal_entries',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('pending_id', sa.BigInteger(), nullable=True),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('withdrawal_id', sa.Uuid(), nullable=True),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['pending_id'], ['journal_entries.id'], name=op.f('fk_journal_entries_pending_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entries')),
    sa.UniqueConstraint('key', name=op.f('uq_journal_entries_key')),
    sa.UniqueConstraint('pending_id', name=op.f('uq_journal_entries_pending_id'))
    )
    op.create_index('ix_journal_entries_order', 'journal_entries', ['order_id'], unique=False, postgresql_where=sa.text('order_id IS NOT NULL'))
    op.create_index('ix_journal_entries_withdrawal', 'journal_entries', ['withdrawal_id'], unique=False, postgresql_where=sa.text('withdrawal_id IS NOT NULL'))
    op.create_table('ledger_orders',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_ledger_orders'))
    )
    op.create_index(op.f('ix_ledger_orders_provider_id'), 'ledger_orders', ['provider_id'], unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('envelope', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event_id'))
    )
    op.create_index('ix_outbox_unpublished', 'outbox', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('parked_events',
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('envelope', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('parked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_parked_events'))
    )
    op.create_index('ix_parked_events_due', 'parked_events', ['next_attempt_at'], unique=False, postgresql_where=sa.text('resolved_at IS NULL'))
    op.create_index('ix_parked_events_subject', 'parked_events', ['subject'], unique=False, postgresql_where=sa.text('resolved_at IS NULL'))
    op.create_table('ledger_providers',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('kyc_approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payout_account_id', sa.Uuid(), nullable=True),
    sa.Column('payout_account_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_ledger_providers'))
    )
    op.create_table('withdrawals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_withdrawals_amount_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals'))
    )
    op.create_index('ix_withdrawals_provider', 'withdrawals', ['provider_id', 'created_at', 'id'], unique=False)
    op.create_table('postings',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('pending', sa.Boolean(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_postings_amount_not_zero')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_postings_entry_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    op.create_index('ix_postings_account', 'postings', ['account_id', 'id'], unique=False)
    op.create_index(op.f('ix_postings_entry_id'), 'postings', ['entry_id'], unique=False)
    # ### end Alembic commands ###
    for statement in (*OUTBOX_NOTIFY, *APPEND_ONLY, POST_FUNCTION, *GRANTS):
        op.execute(statement)
    app_role = os.environ.get("LEDGER_APP_ROLE")
    if app_role:
        op.execute(f'GRANT {WRITER} TO "{app_role}"')


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {WRITER}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {WRITER}")
    op.execute("DROP TRIGGER postings_append_only ON postings")
    op.execute("DROP TRIGGER journal_entries_append_only ON journal_entries")
    op.execute("DROP FUNCTION ledger_append_only()")
    op.execute("DROP FUNCTION ledger_post")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION krika_outbox_notify()")
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index(op.f('ix_postings_entry_id'), table_name='postings')
    op.drop_index('ix_postings_account', table_name='postings')
    op.drop_table('postings')
    op.drop_index('ix_withdrawals_provider', table_name='withdrawals')
    op.drop_table('withdrawals')
    op.drop_table('ledger_providers')
    op.drop_index('ix_parked_events_subject', table_name='parked_events', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_index('ix_parked_events_due', table_name='parked_events', postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_table('parked_events')
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index(op.f('ix_ledger_orders_provider_id'), table_name='ledger_orders')
    op.drop_table('ledger_orders')
    op.drop_index('ix_journal_entries_withdrawal', table_name='journal_entries', postgresql_where=sa.text('withdrawal_id IS NOT NULL'))
    op.drop_index('ix_journal_entries_order', table_name='journal_entries', postgresql_where=sa.text('order_id IS NOT NULL'))
    op.drop_table('journal_entries')
    op.drop_index(op.f('ix_inbox_received_at'), table_name='inbox')
    op.drop_table('inbox')
    op.drop_index(op.f('ix_idempotency_keys_created_at'), table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_index('ux_accounts_system', table_name='accounts', postgresql_where=sa.text('owner_id IS NULL'))
    op.drop_index('ix_accounts_owner', table_name='accounts')
    op.drop_table('accounts')
    # ### end Alembic commands ###
