"""The pgvector backend at 100k and 1M vectors: build time, size, recall@10, latency, filtered search.

``python -m benchmarks.backends_pgvector [--sizes 100000,1000000] [--queries 200]`` starts its own
PostgreSQL 16 + pgvector (the ``pgserver`` wheel) in a temporary folder, or uses the one named by
``VISUAL_SEARCH_BENCH_POSTGRES`` (a ``postgresql://`` URI), and adds it to Django as the database
alias ``bench_pg``: the rest of the benchmark project stays as it is, so :func:`run` can be wired
into ``python -m benchmarks`` as it stands. Results go to ``benchmarks/results/pgvector.json``.

Vectors: 512-dimensional unit vectors in Gaussian clusters (a few hundred kinds of product, each
photo a noisy view of its kind), not uniform noise, which no index can find neighbours in. The
whitening is fitted on them as the product would (128 dimensions), and the backend indexes the
whitened vectors. Queries are held-out vectors of the same distribution. recall@10: the share of
the exact top 10 (NumPy, same whitened vectors, query expansion off) that the backend returns.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ALIAS = "bench_pg"
DIMS = 512
RESULTS = Path(__file__).resolve().parent / "results"
SERVER_SETTINGS = {
    # A production-like server for a 24 GB machine: the graph and vectors stay in shared memory.
    "shared_buffers": "4GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "2",
    "work_mem": "64MB",
    "effective_cache_size": "12GB",
    "jit": "off",
}


def start_postgres() -> str:
    """A running server's URI: ``VISUAL_SEARCH_BENCH_POSTGRES``, or a pgserver in a temporary folder."""
    if os.environ.get("VISUAL_SEARCH_BENCH_POSTGRES"):
        return os.environ["VISUAL_SEARCH_BENCH_POSTGRES"]
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="vs-bench-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in SERVER_SETTINGS.items()))
    server.cleanup()  # restart so that shared_buffers applies
    server = pgserver.get_server(folder, cleanup_mode="delete")
    start_postgres.server = server  # keep it alive as long as the process
    return server.get_uri()


def add_alias(uri: str) -> None:
    from django.core.management import call_command
    from django.db import connections

    from tests.postgres import database_settings

    config = database_settings(uri)
    connections.settings[ALIAS] = connections.configure_settings({"default": connections.settings["default"], ALIAS: config})[ALIAS]
    call_command("migrate", database=ALIAS, verbosity=0)


def clustered(n: int, seed: int, clusters: int = 500, spread: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(1234)
    centres = rng.standard_normal((clusters, DIMS)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, DIMS)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def fill_rows(vectors: np.ndarray, result_type_id: int, fingerprint: str) -> None:
    """Ready ImageEmbedding rows, written with COPY (as fast as the database takes them)."""
    from django.db import connections

    from visual_search.models import ImageEmbedding

    table = ImageEmbedding._meta.db_table
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"TRUNCATE {table} RESTART IDENTITY CASCADE")
        columns = ("content_type_id, object_id, field_name, result_type_id, result_id, status, error, source_name,"
                   " checksum, fingerprint, dimensions, vector, created_at, updated_at")
        for start in range(0, len(vectors), 50_000):
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "varchar", "varchar", "int4", "varchar", "varchar", "text", "varchar", "varchar",
                                "varchar", "int2", "bytea", "timestamptz", "timestamptz"])
                now = _now()
                for i in range(start, min(start + 50_000, len(vectors))):
                    copy.write_row((result_type_id, str(i), "image", result_type_id, str(i), "ready", "", "", "",
                                    fingerprint, DIMS, vectors[i].tobytes(), now, now))
        cursor.execute(f"ANALYZE {table}")


def _now():
    from django.utils import timezone

    return timezone.now()


def build(backend, result_type_id: int, fingerprint: str, chunk: int = 5000) -> dict:
    """What a rebuild does: reset(), add() chunks of rows read from the database, finish()."""
    from visual_search.models import ImageEmbedding

    rows = ImageEmbedding.objects.using(ALIAS).ready(fingerprint).filter(result_type_id=result_type_id).order_by()
    start = time.perf_counter()
    backend.reset()
    batch = []
    for row in rows.only("id", "result_id", "updated_at", "vector", "status", "result_type_id", "fingerprint").iterator(chunk_size=chunk):
        batch.append(row)
        if len(batch) == chunk:
            backend.add(batch)
            batch = []
    if batch:
        backend.add(batch)
    inserted = time.perf_counter()
    backend.finish()
    done = time.perf_counter()
    return {"insert_s": inserted - start, "hnsw_s": done - inserted, "build_s": done - start}


def sizes_on_disk() -> dict:
    from django.db import connections

    from visual_search.backends.pgvector import schema

    with connections[ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT id FROM {schema.GENERATIONS} WHERE state = 'live'")
        table = schema.vectors_table(cursor.fetchone()[0])
        cursor.execute("SELECT pg_table_size(%s), pg_relation_size(%s), pg_relation_size(%s)",
                       [table, f"{table}_hnsw", f"{table}_result"])
        table_bytes, hnsw_bytes, btree_bytes = cursor.fetchone()
    return {"table_mb": table_bytes / 2**20, "hnsw_mb": hnsw_bytes / 2**20, "btree_mb": btree_bytes / 2**20}


def exact_top(catalogue: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[str]:
    scores = catalogue @ query
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    return [str(i) for i in top[np.argsort(-scores[top])]]


def latency_and_recall(backend, queries, whitened_queries, catalogue, kwargs, restrict=None, allowed=None) -> dict:
    samples, recalls = [], []
    for query, whitened in zip(queries, whitened_queries):
        start = time.perf_counter()
        hits = backend.search(query, restrict_to=restrict, **kwargs)
        samples.append(time.perf_counter() - start)
        truth = exact_top(catalogue, whitened, 10, allowed)
        recalls.append(len({h.result_id for h in hits} & set(truth)) / 10)
    ms = np.asarray(samples[1:] or samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "recall_at_10": float(np.mean(recalls))}


def run(sizes=(100_000, 1_000_000), queries: int = 200, ef_searches=(40, 100, 200), filtered: bool = True) -> dict:
    """Measure each size; returns ``{"search.backends.pgvector.<figure>": {size: value}}`` and more."""
    from django.contrib.contenttypes.models import ContentType
    from django.test.utils import override_settings

    from tests.testapp.models import Product
    from visual_search.backends.pgvector import PgvectorBackend
    from visual_search.serving import current_fingerprint
    from visual_search.models import Whitening
    from visual_search.ranking import fit_whitening, whiten

    if ALIAS not in __import__("django.db").db.connections.settings:
        add_alias(start_postgres())
    result_type_id = ContentType.objects.db_manager(ALIAS).get_for_model(Product).pk
    fingerprint = current_fingerprint()
    prefix = "search.backends.pgvector."
    figures: dict = {prefix + key: {} for key in ("p50_ms", "p99_ms", "recall_at_10", "build_s")}
    details: dict = {}
    query_vectors = clustered(queries, seed=99)
    for n in sizes:
        size = str(n)
        catalogue = clustered(n, seed=n)
        start = time.perf_counter()
        fill_rows(catalogue, result_type_id, fingerprint)
        rows_s = time.perf_counter() - start
        sample = catalogue[np.random.default_rng(0).choice(n, min(n, 100_000), replace=False)]
        mean, projection = fit_whitening(sample, 128)
        Whitening.objects.using(ALIAS).update_or_create(
            result_type_id=result_type_id, fingerprint=fingerprint,
            defaults={"dimensions": 128, "trained_on": n, "mean": mean.tobytes(), "projection": projection.tobytes()},
        )
        whitened = whiten(catalogue, mean, projection)
        del catalogue
        whitened_queries = whiten(query_vectors, mean, projection)
        backend = PgvectorBackend(using=ALIAS, maintenance_work_mem="4GB")  # the default graph
        built = build(backend, result_type_id, fingerprint)
        disk = sizes_on_disk()
        print(f"{n:>9,} vectors: rows written in {rows_s:.0f} s; build {built['build_s']:.0f} s "
              f"(transform + COPY {built['insert_s']:.0f} s, HNSW {built['hnsw_s']:.0f} s); "
              f"vectors {disk['table_mb']:.0f} MB, HNSW {disk['hnsw_mb']:.0f} MB", flush=True)
        details[size] = {"rows_write_s": rows_s, **built, **disk, "ef_search": {}}
        kwargs = {"result_type_id": result_type_id, "fingerprint": fingerprint, "limit": 10}
        chosen = None
        with override_settings(VISUAL_SEARCH={**_visual_search(), "QUERY_EXPANSION": 0}):
            # One unmeasured pass: the first ef_search measured would otherwise pay for a cold cache.
            backend.ef_search = ef_searches[0]
            latency_and_recall(backend, query_vectors, whitened_queries, whitened, kwargs)
            for ef in ef_searches:
                backend.ef_search = ef
                measured = latency_and_recall(backend, query_vectors, whitened_queries, whitened, kwargs)
                details[size]["ef_search"][str(ef)] = measured
                print(f"    ef_search {ef:>4}: p50 {measured['p50_ms']:6.2f} ms  p99 {measured['p99_ms']:6.2f} ms  "
                      f"recall@10 {measured['recall_at_10']:.3f}", flush=True)
                if chosen is None and measured["recall_at_10"] >= 0.95:
                    chosen = (ef, measured)
        ef, measured = chosen or (ef_searches[-1], details[size]["ef_search"][str(ef_searches[-1])])
        backend.ef_search = ef
        details[size]["ef_search_chosen"] = ef
        for key in ("p50_ms", "p99_ms", "recall_at_10"):
            figures[prefix + key][size] = measured[key]
        figures[prefix + "build_s"][size] = built["build_s"]
        # Query expansion (0.1's default, off since 0.2): two index passes per search.
        with override_settings(VISUAL_SEARCH={**_visual_search(), "QUERY_EXPANSION": 3}):
            qe = latency_and_recall(backend, query_vectors, whitened_queries, whitened, kwargs)
        details[size]["query_expansion"] = {"p50_ms": qe["p50_ms"], "p99_ms": qe["p99_ms"]}
        print(f"    with query expansion (ef_search {ef}): p50 {qe['p50_ms']:6.2f} ms  p99 {qe['p99_ms']:6.2f} ms", flush=True)
        if filtered:
            with override_settings(VISUAL_SEARCH={**_visual_search(), "QUERY_EXPANSION": 0}):
                details[size]["filtered"] = filtered_search(backend, query_vectors[:50], whitened_queries[:50], whitened, kwargs)
    figures["search.backends.pgvector.details"] = details
    return figures


def filtered_search(backend, queries, whitened_queries, catalogue, kwargs) -> dict:
    """A restriction to a share of the catalogue: exact scan of the allowed rows vs a widened HNSW scan."""
    from visual_search.backends.pgvector import PgvectorBackend

    n = len(catalogue)
    out = {}
    exact = PgvectorBackend(using=backend.using, ef_search=backend.ef_search, exact_max_rows=10**9)
    widened = PgvectorBackend(using=backend.using, ef_search=backend.ef_search, exact_max_rows=0)
    fallbacks = []
    original = PgvectorBackend._nearest

    def counting(self, cursor, generation, query, restrict, exclude, width, exact, vectors=False):
        if exact:
            fallbacks.append(1)
        return original(self, cursor, generation, query, restrict, exclude, width, exact, vectors)

    for share in (0.001, 0.01, 0.1, 0.5):
        allowed_ids = np.random.default_rng(int(share * 1e6)).choice(n, max(20, int(n * share)), replace=False)
        allowed = np.zeros(n, dtype=bool)
        allowed[allowed_ids] = True
        restrict = [str(i) for i in allowed_ids]
        row = {}
        for name, which in (("exact", exact), ("hnsw_widened", widened)):
            fallbacks.clear()
            PgvectorBackend._nearest = counting
            try:
                measured = latency_and_recall(which, queries, whitened_queries, catalogue, kwargs, restrict, allowed)
            finally:
                PgvectorBackend._nearest = original
            # How many searches ended in the exact scan: by rule (ef_search would need > 1000) or
            # as the fallback when the filtered HNSW candidates left fewer than 10 results.
            measured["answered_exactly"] = len(fallbacks)
            row[name] = measured
        # What the configured backend does with this restriction (None: the exact scan).
        chosen = "exact" if backend._ef(SimpleNamespace(indexed=True), n, restrict, 80) is None else "hnsw_widened"
        row["default_choice"] = chosen
        out[str(share)] = row
        print(f"    restricted to {share:6.1%} ({len(restrict):>7,} results): exact p50 {row['exact']['p50_ms']:7.2f} ms "
              f"recall {row['exact']['recall_at_10']:.3f} | widened HNSW p50 {row['hnsw_widened']['p50_ms']:7.2f} ms "
              f"recall {row['hnsw_widened']['recall_at_10']:.3f} ({row['hnsw_widened']['answered_exactly']}/{len(queries)} answered exactly) "
              f"| default: {chosen}", flush=True)
    return out


def _visual_search() -> dict:
    from django.conf import settings

    return settings.VISUAL_SEARCH


def save(figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "pgvector.json"
    data = json.loads(path.read_text()) if path.exists() else {}

    def merge(into: dict, new: dict) -> None:
        # A run that skips a part (--no-filtered) keeps the figures an earlier run measured.
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(data, figures)
    from .common import machine

    data["machine"] = machine()
    data["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends_pgvector", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-filtered", action="store_true", help="Skip the restricted-search experiment.")
    parser.add_argument("--ef-search", default="100,200,600", help="hnsw.ef_search values to measure; the first with recall@10 >= 0.95 is reported.")
    args = parser.parse_args()
    from .common import setup_django

    setup_django()
    figures = run([int(n) for n in args.sizes.split(",")], args.queries, tuple(int(e) for e in args.ef_search.split(",")),
                  filtered=not args.no_filtered)
    print(f"Written to {save(figures)}")


if __name__ == "__main__":
    main()
