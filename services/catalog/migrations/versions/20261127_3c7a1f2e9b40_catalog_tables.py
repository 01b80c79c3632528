"""catalog: categories, services, packages, media, reviews, providers, outbox, inbox, search

Search: `pg_trgm` and `unaccent` (trusted extensions); IMMUTABLE wrappers around unaccent (it
is only STABLE) so generated columns can use it; on `services` the generated columns `listed`
(published, provider not suspended), `search_document` (tsvector: title A, tags B, description
C, unaccented, English stems), `title_document` (title A and tags B only: cheap to rank on)
and `search_text` (unaccented lower-case title and tags), with partial indexes over the listed
services only. Typo tolerance: `catalog_search_words`, the words of every title and tags (kept
by a trigger) under a trigram index; `catalog_word_query(word)` is the tsquery of a query
word: itself as a prefix, or one of the (at most 3) known words most similar to it. The outbox
NOTIFY trigger is krika_common.events.outbox.OUTBOX_NOTIFY_DDL, written out.

Revision ID: 3c7a1f2e9b40
Revises: 
Create Date: 2026-11-27 13:40:09.541691
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '3c7a1f2e9b40'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FUNCTIONS = (
    """CREATE FUNCTION catalog_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$""",
    """CREATE FUNCTION catalog_search_document(title text, tags text[], description text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT
        setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(title, ''))), 'A')
        || setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(array_to_string(tags, ' '), ''))), 'B')
        || setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(description, ''))), 'C') $$""",
    """CREATE FUNCTION catalog_title_document(title text, tags text[])
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT
        setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(title, ''))), 'A')
        || setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(array_to_string(tags, ' '), ''))), 'B') $$""",
    """CREATE FUNCTION catalog_search_text(title text, tags text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT public.catalog_fold(
        coalesce(title, '') || ' ' || coalesce(array_to_string(tags, ' '), '')) $$""",
)

WORDS = (
    """CREATE TABLE catalog_search_words (
    word text PRIMARY KEY,
    CONSTRAINT ck_catalog_search_words_length CHECK (length(word) BETWEEN 3 AND 40))""",
    """CREATE INDEX ix_catalog_search_words_trgm ON catalog_search_words
    USING gin (word gin_trgm_ops)""",
    """CREATE FUNCTION catalog_remember_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.catalog_search_words (word)
    SELECT DISTINCT w FROM regexp_split_to_table(NEW.search_text, '[^[:alnum:]]+') AS w
    WHERE length(w) BETWEEN 3 AND 40
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER services_remember_words AFTER INSERT OR UPDATE OF title, tags ON services
    FOR EACH ROW EXECUTE FUNCTION catalog_remember_words()""",
    # A word of the query (already folded): itself as a prefix, or a known word like it
    # (trigram similarity >= 0.5, the 3 closest) - "photgraphy" finds "photography". Quoted:
    # unaccent can turn a letter into tsquery syntax ("⑴" is "(1)").
    """CREATE FUNCTION catalog_word_query(word text) RETURNS tsquery
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT to_tsquery('pg_catalog.english', string_agg(term, ' | '))
    FROM (
        SELECT quote_literal($1) || ':*' AS term
        UNION ALL
        (SELECT quote_literal(w.word) FROM public.catalog_search_words w
         WHERE w.word OPERATOR(public.%) $1 AND w.word <> $1
           AND public.similarity(w.word, $1) >= 0.5
         ORDER BY public.similarity(w.word, $1) DESC, w.word
         LIMIT 3)
    ) AS terms $$""",
)

SEARCH = (
    """ALTER TABLE services
    ADD COLUMN listed boolean GENERATED ALWAYS AS
        (status = 'published' AND NOT provider_suspended) STORED,
    ADD COLUMN search_document tsvector GENERATED ALWAYS AS
        (public.catalog_search_document(title, tags, description)) STORED,
    ADD COLUMN title_document tsvector GENERATED ALWAYS AS
        (public.catalog_title_document(title, tags)) STORED,
    ADD COLUMN search_text text GENERATED ALWAYS AS
        (public.catalog_search_text(title, tags)) STORED""",
    "CREATE INDEX ix_services_listed_price ON services (starting_price, id) WHERE listed",
    "CREATE INDEX ix_services_listed_rating ON services (rating_average, id) WHERE listed",
    "CREATE INDEX ix_services_listed_newest ON services (published_at, id) WHERE listed",
    "CREATE INDEX ix_services_listed_category ON services (category_id, id) WHERE listed",
    "CREATE INDEX ix_services_listed_provider ON services (provider_id, id) WHERE listed",
    """CREATE INDEX ix_services_listed_document ON services USING gin (search_document)
    WHERE listed""",
)

OUTBOX_NOTIFY = (
    """CREATE OR REPLACE FUNCTION krika_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('krika_outbox', '');
    RETURN NULL;
END $$""",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION krika_outbox_notify()""",
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    for statement in FUNCTIONS:
        op.execute(statement)
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('categories',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['categories.id'], name=op.f('fk_categories_parent_id_categories'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_categories')),
    sa.UniqueConstraint('slug', name=op.f('uq_categories_slug'))
    )
    op.create_index(op.f('ix_categories_parent_id'), 'categories', ['parent_id'], unique=False)
    op.create_table('completed_orders',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_completed_orders'))
    )
    op.create_index(op.f('ix_completed_orders_service_id'), 'completed_orders', ['service_id'], unique=False)
    op.create_table('inbox',
    sa.Column('consumer', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_index(op.f('ix_inbox_received_at'), 'inbox', ['received_at'], unique=False)
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
    op.create_table('providers',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('kyc_status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('kyc_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('suspended', sa.Boolean(), nullable=False),
    sa.Column('access_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_providers'))
    )
    op.create_table('services',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('category_id', sa.Uuid(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=30)), nullable=False),
    sa.Column('faq', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('provider_suspended', sa.Boolean(), nullable=False),
    sa.Column('starting_price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('fastest_delivery_days', sa.SmallInteger(), nullable=False),
    sa.Column('rating_sum', sa.BigInteger(), nullable=False),
    sa.Column('rating_count', sa.Integer(), nullable=False),
    sa.Column('rating_average', sa.Numeric(precision=3, scale=2), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('rating_count >= 0', name=op.f('ck_services_rating_count_positive')),
    sa.CheckConstraint('starting_price > 0', name=op.f('ck_services_starting_price_positive')),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_services_category_id_categories'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services'))
    )
    op.create_index('ix_services_provider', 'services', ['provider_id', 'created_at'], unique=False)
    op.create_table('media',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_media_service_id_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media'))
    )
    op.create_index(op.f('ix_media_service_id'), 'media', ['service_id'], unique=False)
    op.create_table('packages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('delivery_days', sa.Integer(), nullable=False),
    sa.Column('revisions', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_packages_service_id_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_packages'))
    )
    op.create_index(op.f('ix_packages_service_id'), 'packages', ['service_id'], unique=False)
    op.create_table('reviews',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('service_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('rating', sa.SmallInteger(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name=op.f('ck_reviews_rating_range')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_reviews_service_id_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
    sa.UniqueConstraint('order_id', name=op.f('uq_reviews_order_id'))
    )
    op.create_index('ix_reviews_service_newest', 'reviews', ['service_id', 'created_at', 'id'], unique=False)
    # ### end Alembic commands ###
    for statement in (*SEARCH, *WORDS, *OUTBOX_NOTIFY):
        op.execute(statement)


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index('ix_reviews_service_newest', table_name='reviews')
    op.drop_table('reviews')
    op.drop_index(op.f('ix_packages_service_id'), table_name='packages')
    op.drop_table('packages')
    op.drop_index(op.f('ix_media_service_id'), table_name='media')
    op.drop_table('media')
    op.drop_index('ix_services_provider', table_name='services')
    op.execute("DROP TRIGGER services_remember_words ON services")
    op.drop_table('services')
    op.drop_table('providers')
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION krika_outbox_notify()")
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index(op.f('ix_inbox_received_at'), table_name='inbox')
    op.drop_table('inbox')
    op.drop_index(op.f('ix_completed_orders_service_id'), table_name='completed_orders')
    op.drop_table('completed_orders')
    op.drop_index(op.f('ix_categories_parent_id'), table_name='categories')
    op.drop_table('categories')
    # ### end Alembic commands ###
    op.execute("DROP FUNCTION catalog_word_query(text)")
    op.execute("DROP TABLE catalog_search_words")
    op.execute("DROP FUNCTION catalog_remember_words()")
    op.execute("DROP FUNCTION catalog_search_text(text, text[])")
    op.execute("DROP FUNCTION catalog_title_document(text, text[])")
    op.execute("DROP FUNCTION catalog_search_document(text, text[], text)")
    op.execute("DROP FUNCTION catalog_fold(text)")
