"""Search speed: the index alone and the real DRF search-by-photo endpoint, at growing catalogue sizes.

Catalogue vectors are synthetic (random unit vectors: search cost does not depend on their
content); the query photos are real. Rows are written to the database as a shop's would be, and the
default NumPy backend loads them like any process does.
"""

from __future__ import annotations

import time

import numpy as np

from .common import dataset, insert_ready_rows, percentiles, photo_rows

SIZES = (1_000, 10_000, 100_000, 1_000_000)


def fill(n: int, dims: int = 512) -> None:
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from tests.testapp.models import Product
    from visual_search.serving import current_fingerprint
    from visual_search.models import ImageEmbedding

    ImageEmbedding.objects.all().delete()
    Product.objects.all().delete()
    ct = ContentType.objects.get_for_model(Product).pk
    fingerprint = current_fingerprint()
    rng = np.random.default_rng(0)
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO testapp_product (id, name, category, in_stock, image) VALUES (%s, %s, '', 1, '')",
                           [(i, f"P{i}") for i in range(1, n + 1)])
    now = "2026-01-01 00:00:00"
    for start in range(0, n, 50_000):
        count = min(50_000, n - start)
        vectors = rng.standard_normal((count, dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with connection.cursor() as cursor:
            insert_ready_rows(cursor, [(ct, str(start + i + 1), fingerprint, dims, vectors[i].tobytes(), now, now) for i in range(count)])


def run(sizes=SIZES, queries: int = 50, endpoint_queries: int = 20) -> dict:
    from django.contrib.contenttypes.models import ContentType
    from django.core.cache import cache
    from django.test import Client
    from django.test.utils import override_settings

    from tests.testapp.models import Product
    from visual_search.backends import get_backend
    from visual_search.serving import embed_image, get_extractor
    from visual_search.serving import current_fingerprint

    photos = [dataset() / r["file"] for r in photo_rows("val")][:endpoint_queries + 1]
    query_vectors = [embed_image(p.read_bytes()) for p in photos[:5]]
    get_extractor()
    figures: dict = {"dimensions_searched": None, "p50_ms": {}, "p95_ms": {}, "p99_ms": {}, "index_p50_ms": {}, "index_p99_ms": {},
                     "load_s": {}, "index_bytes_per_million": None}
    from visual_search.whitening import fit

    for n in sizes:
        fill(n)
        start = time.perf_counter()
        fit(Product)  # the default: whitened to WHITENING_DIMS, as reindex would leave it
        figures.setdefault("whitening_fit_s", {})[str(n)] = time.perf_counter() - start
        backend = get_backend()
        backend.reset()
        kwargs = {"result_type_id": ContentType.objects.get_for_model(Product).pk, "fingerprint": current_fingerprint(), "limit": 12}
        start = time.perf_counter()
        backend.search(query_vectors[0], **kwargs)
        figures["load_s"][str(n)] = time.perf_counter() - start
        samples = []
        for i in range(queries):
            start = time.perf_counter()
            backend.search(query_vectors[i % len(query_vectors)], **kwargs)
            samples.append(time.perf_counter() - start)
        index = percentiles(samples)
        figures["index_p50_ms"][str(n)], figures["index_p99_ms"][str(n)] = index["p50_ms"], index["p99_ms"]
        if hasattr(backend, "_matrices"):  # NumPy's (VISUAL_SEARCH_BACKEND=faiss measures FAISS instead)
            matrix = next(iter(backend._matrices.values()))
            figures["index_bytes_per_million"] = matrix.vectors.nbytes / n * 1_000_000
            figures["dimensions_searched"] = int(matrix.vectors.shape[1])
        client = Client()
        samples = []
        with override_settings(ROOT_URLCONF="benchmarks.urls", VISUAL_SEARCH={**__import__("django.conf").conf.settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None}):
            cache.clear()
            for i, path in enumerate(photos):
                with open(path, "rb") as handle:
                    start = time.perf_counter()
                    response = client.post("/api/visual-search/search/", {"image": handle, "limit": 12})
                    elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.content[:300]
                if i:  # the first request pays for warm-up
                    samples.append(elapsed)
        endpoint = percentiles(samples)
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            figures[key][str(n)] = endpoint[key]
        print(f"{n:>9,} vectors: index p50 {index['p50_ms']:7.2f} ms p99 {index['p99_ms']:7.2f} ms | "
              f"endpoint p50 {endpoint['p50_ms']:7.1f} ms p95 {endpoint['p95_ms']:7.1f} ms p99 {endpoint['p99_ms']:7.1f} ms | "
              f"first load {figures['load_s'][str(n)]:.1f} s", flush=True)
    return figures
