"""A shop with a read replica: Django's primary/replica router, and a replica that lags.

``DATABASES["replica"]`` is a second SQLite file, a copy of the primary taken when a test calls
:meth:`Replica.catch_up` (a whole, consistent copy, as a streaming replica is at any moment): between
two copies it is stale, as a replica that lags. ``Replica(up_to_date=True)`` opens the primary's own
file instead, as Django's ``TEST: {"MIRROR": "default"}`` does: a replica that never lags.

Tests use it with ``django_db(transaction=True)``: the replica copies committed data.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from django.db import connections
from django.db.utils import load_backend


class PrimaryReplicaRouter:
    """Django's documented primary/replica router: reads to the replica, writes to the primary."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return True


class Replica:
    """The ``replica`` database of one test: opened beside ``default``, closed and forgotten after."""

    def __init__(self, folder: Path, *, up_to_date: bool = False) -> None:
        primary = connections["default"].settings_dict
        self.up_to_date = up_to_date
        self.path = primary["NAME"] if up_to_date else str(folder / "replica.sqlite3")
        # Made here, not listed in settings.DATABASES: Django's tests allow such a connection.
        wrapper = load_backend(primary["ENGINE"]).DatabaseWrapper
        connections["replica"] = wrapper({**primary, "NAME": self.path, "TEST": {"NAME": self.path}}, "replica")
        self.catch_up()

    def catch_up(self) -> None:
        """The replica receives everything committed on the primary so far."""
        if self.up_to_date:
            return
        connections["replica"].close()
        primary = connections["default"]
        primary.ensure_connection()
        with sqlite3.connect(self.path) as target:
            primary.connection.backup(target)
        target.close()

    def close(self) -> None:
        connections["replica"].close()
        del connections["replica"]
