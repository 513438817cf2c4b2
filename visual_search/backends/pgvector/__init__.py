"""PostgreSQL + pgvector backend::

    VISUAL_SEARCH = {"BACKENDS": {"default": {
        "BACKEND": "visual_search.backends.pgvector.PgvectorBackend",
        "OPTIONS": {"m": 16, "ef_construction": 128, "ef_search": 100},
    }}}

Needs the ``vector`` extension on the server and psycopg (``pip install
"django-visual-search[postgres]"``). See docs/backends.md, "PostgreSQL + pgvector".
"""

from .backend import PgvectorBackend

__all__ = ["PgvectorBackend"]
