"""Splitting work into batches: one helper for tasks, commands and inference, one for reading rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from django.db import connections
from django.db.models import Model, QuerySet

T = TypeVar("T")

# Database vendors whose driver reads a whole result into memory, however small the iterator's
# chunks: mysqlclient's cursor fetches every row (every stored vector) as the query runs. There
# the rows are read page by page, by primary key. SQLite's and psycopg's (server-side) cursors
# already stream, and one query keeps one snapshot of the rows.
BUFFERING_VENDORS = frozenset({"mysql"})


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last may be shorter), read lazily from ``items``."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def row_chunks(rows: QuerySet, size: int) -> Iterator[list]:
    """The rows of ``rows`` in lists of ``size``, holding about one list in memory at a time.

    ``rows`` yields model instances, ``values_list`` tuples whose first field is the primary key, or
    the primary keys themselves (``values_list("pk", flat=True)``).
    Where the driver buffers whole results (:data:`BUFFERING_VENDORS`: MySQL, MariaDB) each list
    is its own query, the next ``size`` rows by primary key (``pk > last``), in primary-key order
    whatever ``rows`` orders by; elsewhere one query, in ``rows``' order, read through
    ``iterator()``.
    """
    if connections[rows.db].vendor not in BUFFERING_VENDORS:
        yield from chunked(rows.iterator(chunk_size=size), size)
        return
    rows = rows.order_by("pk")
    page = list(rows[:size])
    while page:
        yield page
        if len(page) < size:
            return
        page = list(rows.filter(pk__gt=_key(page[-1]))[:size])


def _key(row):
    """The primary key of a row as :func:`row_chunks` reads it."""
    if isinstance(row, Model):
        return row.pk
    return row[0] if isinstance(row, tuple) else row
