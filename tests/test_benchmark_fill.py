"""The benchmarks write their big indexes with raw SQL: a column added by a migration stopped them
(``embed_attempts``, NOT NULL: "IntegrityError" before the first figure). These keep them writing."""

import numpy as np
import pytest

from benchmarks import backends_ann, search
from visual_search.models import ImageEmbedding

pytestmark = pytest.mark.django_db


def test_the_search_suites_index_is_written_ready_and_searchable():
    search.fill(30, dims=8)
    rows = ImageEmbedding.objects.filter(status="ready")
    assert rows.count() == 30 and set(rows.values_list("embed_attempts", flat=True)) == {0}
    assert all(len(row.vector) == 8 * 4 for row in rows)


def test_the_ann_suites_index_is_written_one_row_per_result():
    centres = backends_ann.clustered(5, np.random.default_rng(1), np.zeros((1, backends_ann.DIMS), np.float32) + 1)
    labels = backends_ann.fill(12, centres)
    assert len(labels) == 12
    assert sorted(ImageEmbedding.objects.values_list("result_id", flat=True)) == sorted(str(i) for i in range(1, 13))
