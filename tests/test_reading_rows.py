"""Reading many stored vectors holds a chunk of rows at a time, on MySQL too (batching.row_chunks)."""

import tracemalloc

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.testapp.models import Product
from visual_search import batching
from visual_search.backends.base import BaseBackend
from visual_search.models import ImageEmbedding
from visual_search.serving import current_fingerprint

pytestmark = pytest.mark.django_db(transaction=True)


class Sink(BaseBackend):
    """A backend of the shop's own that keeps nothing: what a rebuild holds is the reading's."""

    def add(self, rows):
        pass

    def reset(self):
        pass


def stored(n: int, dims: int = 8) -> np.ndarray:
    ct = ContentType.objects.get_for_model(Product)
    vectors = np.random.default_rng(0).standard_normal((n, dims)).astype(np.float32)
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(content_type=ct, object_id=str(i), field_name="image", result_type=ct, result_id=str(i), status="ready",
                       fingerprint=current_fingerprint(), dimensions=dims, vector=vectors[i].tobytes())
        for i in range(n)
    )
    return vectors


def test_a_rebuild_holds_a_chunk_of_rows_not_the_catalogue():
    """`visual_search_rebuild_index` to a backend of the shop's own held every row of the catalogue
    at once on MySQL (1.5 times its vectors, as model instances), however small the chunks handed
    to add(): mysqlclient reads a whole result into memory. Now as on SQLite and PostgreSQL."""
    size = stored(6000, dims=512).nbytes
    tracemalloc.start()
    try:
        assert Sink().rebuild(ImageEmbedding.objects.ready(current_fingerprint())) == 6000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * size, (peak / size)


@pytest.mark.parametrize("n", [25, 20, 0])
def test_rows_read_in_pages_come_once_each_in_key_order(monkeypatch, n):
    """Where the driver buffers whole results, each chunk is a query of its own, by primary key."""
    stored(n)
    monkeypatch.setattr(batching, "BUFFERING_VENDORS", frozenset({connection.vendor}))
    rows = ImageEmbedding.objects.order_by("-object_id")  # paged by primary key whatever the order
    pks = sorted(rows.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        instances = list(batching.row_chunks(rows, 10))
    assert [[row.pk for row in chunk] for chunk in instances] == [pks[i : i + 10] for i in range(0, n, 10)]
    assert len(queries) == n // 10 + 1 and all("LIMIT 10" in q["sql"] for q in queries)
    tuples = list(batching.row_chunks(rows.values_list("pk", "result_id"), 10))
    assert [pk for chunk in tuples for pk, _ in chunk] == pks


def test_rows_elsewhere_are_one_query_in_their_own_order():
    stored(25)
    rows = ImageEmbedding.objects.order_by("-pk")
    with CaptureQueriesContext(connection) as queries:
        chunks = list(batching.row_chunks(rows.values_list("pk", flat=True), 10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    if connection.vendor not in batching.BUFFERING_VENDORS:
        assert len(queries) == 1 and sum(chunks, []) == sorted(sum(chunks, []), reverse=True)
