"""The in-process ANN backend (FAISS IVF) against the exact NumPy backend, at 100k and 1M vectors.

Catalogue vectors are synthetic but shaped like a catalogue (512-d unit vectors in Gaussian clusters
around 3,000 centres: photos of similar products lie close together). Uniform noise would be
unrealistically hard for any ANN index: every vector is then about as far from every other. Queries
come from the same clusters and are not in the catalogue. Rows are written to the database as a
shop's would be; each backend fills itself from them as ``visual_search_rebuild_index`` does.

Per backend and size: ``build_s`` (filling it from the rows: the rebuild command for FAISS, reading
the rows, clustering, adding and saving the file; the first load for NumPy), ``memory_mb`` (what the
index holds: FAISS's saved file, NumPy's matrix and id arrays), ``recall_at_10`` (results shared with
the exact backend's top 10) and ``p50_ms`` / ``p99_ms`` of one search as a web process runs it (query
expansion and prototypes on, the product's defaults; one thread).

Restricted searches (``restrict_to``: a filter, the visibility rule), by the share of the vectors
allowed, 20 queries, recall against the exact backend with the same restriction. Two kinds of
restriction: ``restricted``, rows drawn at random, and ``restricted_clustered``, whole clusters of
rows (a category: a few of the 3,000 centres), mostly far from the query. For each: the backend's
choice (``plan``: ``gather``, ``scan`` or ``probe``) against each plan forced: ``gather`` (exact: the
allowed vectors gathered and compared), ``scan`` (exact: FAISS over every cluster holding an allowed
vector) and ``probe`` (the ``FILTER_DEPTH`` rounds, never cut short by ``SCAN_SHARE``). Written to
``benchmarks/results/ann.json``.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .common import RESULTS, insert_ready_rows, machine, percentiles

SIZES = (100_000, 1_000_000)
GATHER_CAP = 200_000  # the forced gather plan is measured up to this many allowed rows
DIMS = 512
CENTRES = 3_000


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, noise: float = 1.0, labels: list | None = None) -> np.ndarray:
    """``n`` unit vectors around ``centres``; the centre of each is appended to ``labels`` if given."""
    drawn = rng.integers(0, len(centres), n)
    if labels is not None:
        labels.append(drawn)
    x = centres[drawn] + noise * rng.standard_normal((n, DIMS)).astype(np.float32) / np.sqrt(DIMS)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(n: int, centres: np.ndarray) -> np.ndarray:
    """``n`` ready rows, one image per result (result id ``i + 1`` for row ``i``), inserted as fast as
    SQLite allows; returns the centre of each row."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from tests.testapp.models import Product
    from visual_search.serving import current_fingerprint
    from visual_search.models import ImageEmbedding, Whitening

    ImageEmbedding.objects.all().delete()
    Whitening.objects.all().delete()  # 512 dimensions searched, as the issue measures
    ct = ContentType.objects.get_for_model(Product).pk
    fingerprint = current_fingerprint()
    rng = np.random.default_rng(0)
    # One row a second, as if written over days: a process applying "rows changed since" gets few.
    first = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    labels: list = []
    for start in range(0, n, 50_000):
        count = min(50_000, n - start)
        vectors = clustered(count, rng, centres, labels=labels)
        stamps = [datetime.fromtimestamp(first + start + i, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for i in range(count)]
        with connection.cursor() as cursor:
            insert_ready_rows(cursor, [(ct, str(start + i + 1), fingerprint, DIMS, vectors[i].tobytes(), stamps[i], stamps[i]) for i in range(count)])
    return np.concatenate(labels)


def restrictions(n: int, labels: np.ndarray, fraction: float) -> dict[str, set[str]]:
    """Result ids allowing about ``fraction`` of the rows: drawn at random, and whole clusters (a
    category: centres taken in a random order until their rows make up the share)."""
    drawn = np.random.default_rng(2).choice(np.arange(1, n + 1), int(n * fraction), replace=False)
    sizes = np.bincount(labels, minlength=CENTRES)
    order = np.random.default_rng(3).permutation(CENTRES)
    taken = order[: int(np.searchsorted(np.cumsum(sizes[order]), n * fraction)) + 1]
    return {"random": {str(i) for i in drawn}, "clustered": {str(i + 1) for i in np.flatnonzero(np.isin(labels, taken))}}


def timed_searches(backend, queries, **kwargs) -> tuple[list, list[float]]:
    results, samples = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(backend.search(query, **kwargs))
        samples.append(time.perf_counter() - start)
    return results, samples


def recall(found: list, truth: list) -> float:
    return float(np.mean([len({h.result_id for h in f} & {h.result_id for h in t}) / max(1, len(t)) for f, t in zip(found, truth)]))


def run(sizes=SIZES, queries: int = 100, fractions=(0.5, 0.1, 0.02, 0.005)) -> dict:
    import faiss
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Product
    from visual_search.backends.faiss import FaissBackend
    from visual_search.backends.numpy import NumpyBackend
    from visual_search.serving import current_fingerprint
    from visual_search.models import ImageEmbedding

    rng = np.random.default_rng(42)
    centres = rng.standard_normal((CENTRES, DIMS)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    query_vectors = clustered(queries, np.random.default_rng(1), centres)
    kwargs = {"result_type_id": ContentType.objects.get_for_model(Product).pk, "fingerprint": current_fingerprint(), "limit": 10}
    figures: dict = {name: {k: {} for k in ("build_s", "memory_mb", "recall_at_10", "p50_ms", "p99_ms")} for name in ("faiss", "numpy")}
    figures["faiss"].update(load_s={}, restricted={}, restricted_clustered={})
    folder = Path(tempfile.mkdtemp(prefix="visual_search_ann_"))
    try:
        for n in sizes:
            labels = fill(n, centres)
            size = str(n)
            # NumPy: the exact reference. "Build" is its first load of the rows.
            exact = NumpyBackend()
            start = time.perf_counter()
            exact.search(query_vectors[0], **kwargs)
            figures["numpy"]["build_s"][size] = time.perf_counter() - start
            matrix = next(iter(exact._matrices.values()))
            figures["numpy"]["memory_mb"][size] = (matrix.vectors.nbytes + matrix.ids.nbytes + matrix.codes.nbytes) / 2**20
            truth, samples = timed_searches(exact, query_vectors, **kwargs)
            record(figures["numpy"], size, samples, 1.0)
            restricted_truth: dict = {"random": {}, "clustered": {}}
            for fraction in fractions:
                for kind, allowed in restrictions(n, labels, fraction).items():
                    truth_of = timed_searches(exact, query_vectors[:20], restrict_to=allowed, **kwargs)[0]
                    restricted_truth[kind][fraction] = (allowed, truth_of)
            del exact, matrix
            gc.collect()

            # FAISS: built as the rebuild command builds it (2 threads), searched with one.
            faiss.omp_set_num_threads(2)
            backend = FaissBackend(PATH=str(folder / size))
            log = logging.getLogger("visual_search")
            parts = logging.StreamHandler(sys.stdout)  # where the build's time went (its log line)
            parts.setFormatter(logging.Formatter("  faiss  %(message)s"))
            level = log.level
            log.setLevel(logging.INFO)
            log.addHandler(parts)
            start = time.perf_counter()
            try:
                backend.rebuild(ImageEmbedding.objects.ready(kwargs["fingerprint"]))
            finally:
                log.removeHandler(parts)
                log.setLevel(level)
            figures["faiss"]["build_s"][size] = time.perf_counter() - start
            figures["faiss"]["memory_mb"][size] = sum(f.stat().st_size for f in (folder / size).glob("*.faiss")) / 2**20
            del backend
            gc.collect()
            faiss.omp_set_num_threads(1)
            backend = FaissBackend(PATH=str(folder / size))  # a web process starting: loads the file
            start = time.perf_counter()
            backend.search(query_vectors[0], **kwargs)
            figures["faiss"]["load_s"][size] = time.perf_counter() - start
            found, samples = timed_searches(backend, query_vectors, **kwargs)
            record(figures["faiss"], size, samples, recall(found, truth))
            state = next(iter(backend._indexes.values()))
            print(f"{n:>9,} vectors, {state.nlist} clusters, NPROBE {backend.nprobe}:")
            for name in ("numpy", "faiss"):
                f = figures[name]
                print(f"  {name:6s} build {f['build_s'][size]:7.1f} s  memory {f['memory_mb'][size]:7.0f} MB  "
                      f"recall@10 {f['recall_at_10'][size]:.3f}  p50 {f['p50_ms'][size]:7.2f} ms  p99 {f['p99_ms'][size]:7.2f} ms", flush=True)
            print(f"  faiss  a new process loads the saved index in {figures['faiss']['load_s'][size]:.1f} s")
            for kind, name in (("random", "restricted"), ("clustered", "restricted_clustered")):
                print(f"  restricted to {kind} rows:")
                figures["faiss"][name][size] = crossover(backend, query_vectors[:20], restricted_truth[kind], kwargs)
            del backend, state
            gc.collect()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def record(figures: dict, size: str, samples: list[float], recall_at_10: float) -> None:
    timing = percentiles(samples)
    figures["p50_ms"][size], figures["p99_ms"][size] = timing["p50_ms"], timing["p99_ms"]
    figures["recall_at_10"][size] = recall_at_10


def crossover(backend, queries, restricted_truth: dict, kwargs: dict) -> dict:
    """The backend's choice for each restriction against each plan forced (see the module's doc)."""
    state = next(iter(backend._indexes.values()))
    rows = {}
    chosen: list[str] = []
    gathered, scanned = backend._gathered, backend._scanned

    def gathering(*args, **kw):
        chosen.append("gather")
        return gathered(*args, **kw)

    def scanning(*args, **kw):
        found = scanned(*args, **kw)
        chosen.append("scan" if found.exact else "probe")
        return found

    backend._gathered, backend._scanned = gathering, scanning
    forced = {
        "chosen": {},
        "gather": {"gather_max": float("inf"), "gather_cost": 0},
        "scan": {"gather_max": -1, "filter_depth": float("inf")},
        "probe": {"gather_max": -1, "scan_share": float("inf")},
    }
    try:
        for fraction, (allowed, truth) in restricted_truth.items():
            row = {"allowed": len(allowed), "clusters": state.nlist}
            for mode, settings in forced.items():
                if mode == "gather" and len(allowed) > GATHER_CAP:  # a gigabyte per search at 1M and 50 %
                    row["gather_p50_ms"] = row["gather_recall_at_10"] = None
                    continue
                saved = {name: getattr(backend, name) for name in settings}
                for name, value in settings.items():
                    setattr(backend, name, value)
                chosen.clear()
                found, samples = timed_searches(backend, queries, restrict_to=allowed, **kwargs)
                for name, value in saved.items():
                    setattr(backend, name, value)
                if mode == "chosen":
                    row["plan"] = max(set(chosen), key=chosen.count) if chosen else "none"
                row[f"{mode}_p50_ms"] = percentiles(samples)["p50_ms"]
                row[f"{mode}_recall_at_10"] = recall(found, truth)
            rows[str(fraction)] = row
            print(f"    {fraction:6.1%} ({len(allowed):>7,} rows): chosen {row['plan']:6s} {row['chosen_p50_ms']:7.2f} ms "
                  f"recall {row['chosen_recall_at_10']:.3f} | gather {row['gather_p50_ms'] or float('nan'):7.2f} ms | scan {row['scan_p50_ms']:7.2f} ms "
                  f"| probe {row['probe_p50_ms']:7.2f} ms recall {row['probe_recall_at_10']:.3f}", flush=True)
    finally:
        backend._gathered, backend._scanned = gathered, scanned
    return rows


def save(figures: dict) -> Path:
    """Write ``search.backends.<name>.<figure>`` objects keyed by size to results/ann.json."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "ann.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(machine=machine(), date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    backends = data.setdefault("search", {}).setdefault("backends", {})
    for name, values in figures.items():
        for key, by_size in values.items():
            backends.setdefault(name, {}).setdefault(key, {}).update(by_size)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
