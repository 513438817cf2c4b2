"""The PostgreSQL objects of the pgvector backend, created only where the database is PostgreSQL.

One small catalogue table, ``visual_search_pgvector_generation``, lists the *generations*: the
vectors of one searchable model and fingerprint, transformed by one whitening (its mean and
projection are copied into the row, so a generation never changes meaning). Each generation owns
one plain table, ``visual_search_pgvector_<id>``, with a ``vector(<dims>)`` column of fixed
dimension (what an HNSW index needs) and its own HNSW index with cosine distance. A whitening refit
builds a new generation beside the live one and swaps them in one transaction; dropping a
generation is one ``DROP TABLE``. See docs/backends.md, "PostgreSQL + pgvector".
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

GENERATIONS = "visual_search_pgvector_generation"

CREATE_GENERATIONS = f"""
CREATE TABLE IF NOT EXISTS {GENERATIONS} (
    id serial PRIMARY KEY,
    result_type_id integer NOT NULL,
    fingerprint varchar(32) NOT NULL,
    dimensions smallint NOT NULL,
    -- updated_at of the Whitening row these vectors were transformed with; NULL: not whitened.
    whitening_updated_at timestamptz NULL,
    mean bytea NULL,
    projection bytea NULL,
    -- 'live' (searched and written) or 'building' (written, swapped in when complete).
    state varchar(10) NOT NULL,
    indexed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS {GENERATIONS}_one_live
    ON {GENERATIONS} (result_type_id, fingerprint) WHERE state = 'live';
"""


def vectors_table(generation_id: int) -> str:
    """The table of one generation's vectors (the id is an integer from our own table: safe in SQL)."""
    return f"visual_search_pgvector_{int(generation_id)}"


def create_vectors_table(cursor, generation_id: int, dimensions: int) -> None:
    table = vectors_table(generation_id)
    cursor.execute(
        f"""CREATE TABLE {table} (
            embedding_id bigint PRIMARY KEY,
            result_id varchar(64) NOT NULL,
            -- ImageEmbedding.updated_at of the row this vector was made from: a search joins the
            -- rows and skips a vector whose row has changed since (pending, failed, recomputed).
            updated_at timestamptz NOT NULL,
            vector vector({int(dimensions)}) NOT NULL
        )"""
    )
    cursor.execute(f"CREATE INDEX {table}_result ON {table} (result_id)")


def create_hnsw_index(cursor, generation_id: int, m: int, ef_construction: int) -> None:
    table = vectors_table(generation_id)
    cursor.execute(
        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (vector vector_cosine_ops)"
        f" WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )


def vector_extension_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    return cursor.fetchone() is not None


def ensure_schema(connection) -> None:
    """Create the extension and the generations table if missing; explain what to do if that fails."""
    if connection.vendor != "postgresql":
        raise ImproperlyConfigured(postgresql_required(connection))
    with connection.cursor() as cursor:
        if not vector_extension_available(cursor):
            raise ImproperlyConfigured(
                "The pgvector backend needs the PostgreSQL 'vector' extension, which this server does not "
                "have: install pgvector (https://github.com/pgvector/pgvector, e.g. apt-get install "
                "postgresql-16-pgvector from the PostgreSQL apt repository, or the pgvector/pgvector Docker image), "
                "then restart the web and worker processes."
            )
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cursor.execute(CREATE_GENERATIONS)
        except DatabaseError as exc:
            raise ImproperlyConfigured(
                "The pgvector backend could not create its tables "
                f"({exc}). Run `CREATE EXTENSION vector;` as a superuser in database "
                f"{connection.settings_dict['NAME']!r} (creating an extension needs one), then "
                "`manage.py visual_search_rebuild_index`: the images indexed meanwhile are ready but not in the index "
                "(searches find nothing of them until then; nothing is recomputed)."
            ) from exc


def postgresql_required(connection) -> str:
    return (
        f"visual_search.backends.pgvector.PgvectorBackend needs a PostgreSQL database, but DATABASES"
        f"[{connection.alias!r}] is {connection.vendor}. Either point it at PostgreSQL with the pgvector "
        "extension (pip install \"django-visual-search[postgres]\"), or keep the default backend: remove "
        "VISUAL_SEARCH['BACKENDS'] or set it to visual_search.backends.numpy.NumpyBackend."
    )


def drop_all(cursor) -> None:
    """Drop every generation and its vectors (the rows of ImageEmbedding are untouched)."""
    cursor.execute(f"SELECT id FROM {GENERATIONS}")
    for (generation_id,) in cursor.fetchall():
        cursor.execute(f"DROP TABLE IF EXISTS {vectors_table(generation_id)}")
    cursor.execute(f"DELETE FROM {GENERATIONS}")
