"""What the pgvector backend says when the database user may not create the `vector` extension.
No server needed: a connection whose cursor answers as PostgreSQL does to a user that is neither a
superuser nor the owner of a trusted extension."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import ProgrammingError

from visual_search.backends.pgvector import schema


class Cursor:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def execute(self, sql, params=None):
        self.sql = sql
        if sql.startswith("CREATE EXTENSION"):
            raise ProgrammingError('permission denied to create extension "vector"')

    def fetchone(self):
        return (1,)  # pg_available_extensions lists it: installed on the server, not created here


class Connection:
    vendor = "postgresql"
    alias = "default"
    settings_dict = {"NAME": "shop"}

    def cursor(self):
        return Cursor()


def test_without_the_right_to_create_the_extension_the_error_says_to_rebuild_the_index_afterwards():
    """Deployed with a database user that is not a superuser: the workers computed the catalogue
    (rows ready) while every write to the index failed. After `CREATE EXTENSION vector;` and the
    restart the error asked for, searches answered 200 with no results: the index was empty until
    `visual_search_rebuild_index`, which the error did not name."""
    with pytest.raises(ImproperlyConfigured) as error:
        schema.ensure_schema(Connection())
    message = str(error.value)
    assert "CREATE EXTENSION vector;" in message and "'shop'" in message
    assert "visual_search_rebuild_index" in message
