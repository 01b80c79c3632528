"""search: prefixes of whole words, not only of their English stems

Revision ID: 5d2e8a417c03
Revises: 3c7a1f2e9b40
Create Date: 2026-11-27 14:30:00

A prefix was only matched against English stems, and a stem can be shorter than what a person
has typed so far: "wedding" is indexed as `wed`, so `wedd` found nothing. The documents now
also hold the title's and tags' words unstemmed ('simple' configuration, same weights), and a
query word is also tried as a prefix of those. The generated columns are rebuilt on the new
functions (a table rewrite) and their index with them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5d2e8a417c03"
down_revision: str | None = "3c7a1f2e9b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _documents(with_simple: bool) -> tuple[str, str]:
    simple = (
        """
        || setweight(to_tsvector('pg_catalog.simple'::regconfig,
            public.catalog_fold(coalesce(title, ''))), 'A')
        || setweight(to_tsvector('pg_catalog.simple'::regconfig,
            public.catalog_fold(coalesce(array_to_string(tags, ' '), ''))), 'B')"""
        if with_simple
        else ""
    )
    title_and_tags = """
        setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(title, ''))), 'A')
        || setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(array_to_string(tags, ' '), ''))), 'B')"""
    search = f"""CREATE OR REPLACE FUNCTION catalog_search_document(
        title text, tags text[], description text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT {title_and_tags}
        || setweight(to_tsvector('pg_catalog.english'::regconfig,
            public.catalog_fold(coalesce(description, ''))), 'C'){simple} $$"""
    title = f"""CREATE OR REPLACE FUNCTION catalog_title_document(title text, tags text[])
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT {title_and_tags}{simple} $$"""
    return search, title


def _word_query(with_simple: bool) -> str:
    simple = (
        " || to_tsquery('pg_catalog.simple', quote_literal($1) || ':*')" if with_simple else ""
    )
    return f"""CREATE OR REPLACE FUNCTION catalog_word_query(word text) RETURNS tsquery
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT to_tsquery('pg_catalog.english', string_agg(term, ' | ')){simple}
    FROM (
        SELECT quote_literal($1) || ':*' AS term
        UNION ALL
        (SELECT quote_literal(w.word) FROM public.catalog_search_words w
         WHERE w.word OPERATOR(public.%) $1 AND w.word <> $1
           AND public.similarity(w.word, $1) >= 0.5
         ORDER BY public.similarity(w.word, $1) DESC, w.word
         LIMIT 3)
    ) AS terms $$"""


def _rebuild(with_simple: bool) -> None:
    # The stored columns depend on the functions: drop them (and their index), replace the
    # functions, add them again (computed for every row).
    op.execute("ALTER TABLE services DROP COLUMN search_document, DROP COLUMN title_document")
    for statement in _documents(with_simple):
        op.execute(statement)
    op.execute(
        """ALTER TABLE services
        ADD COLUMN search_document tsvector GENERATED ALWAYS AS
            (public.catalog_search_document(title, tags, description)) STORED,
        ADD COLUMN title_document tsvector GENERATED ALWAYS AS
            (public.catalog_title_document(title, tags)) STORED"""
    )
    op.execute(
        """CREATE INDEX ix_services_listed_document ON services USING gin (search_document)
        WHERE listed"""
    )
    op.execute(_word_query(with_simple))


def upgrade() -> None:
    _rebuild(with_simple=True)


def downgrade() -> None:
    _rebuild(with_simple=False)
