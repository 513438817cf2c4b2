"""The pgvector backend's generations table, on PostgreSQL only.

SQLite and other databases get nothing. On PostgreSQL without the ``vector`` extension available
(or without the right to create it) the migration does nothing either, so a PostgreSQL shop that
keeps the default NumPy backend is never blocked; the pgvector backend, when configured, says
what to do. The per-generation vector tables are created by the backend itself, at run time.
"""

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger("visual_search")


def create(apps, schema_editor):
    from visual_search.backends.pgvector import schema

    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if not schema.vector_extension_available(cursor):
            return
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
                cursor.execute(schema.CREATE_GENERATIONS)
        except DatabaseError as exc:
            logger.warning("pgvector tables not created (%s); the pgvector backend will say what to do.", exc)


def drop(apps, schema_editor):
    from visual_search.backends.pgvector import schema

    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [schema.GENERATIONS])
        if cursor.fetchone()[0] is not None:
            schema.drop_all(cursor)
            cursor.execute(f"DROP TABLE {schema.GENERATIONS}")


class Migration(migrations.Migration):
    dependencies = [
        ("visual_search", "0005_embedding_per_version"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
