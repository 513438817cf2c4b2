"""Exact cosine search in process memory, over the vectors stored in the database.

Each process keeps a matrix of the ready vectors per (result model, fingerprint) and, before a
search (at most every ``REFRESH_INTERVAL`` seconds), asks the database one aggregate that an
index covers (count and latest ``updated_at``). When another
process (a Celery worker) has written or deleted rows, only the changed rows are fetched. So a web
process sees what a worker computed without a restart, and the rows stay the single truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.db.models import Count, Max

from .base import BaseBackend, Hit

# Rows are fetched again from a little before the newest timestamp seen: a worker's row that was
# stamped before, but committed after, the last refresh is still picked up.
COMMIT_SKEW = timedelta(seconds=5)


@dataclass
class _Matrix:
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    signature: tuple | None = None
    newest: object = None
    result_codes: dict[str, int] = field(default_factory=dict)
    result_ids: list[str] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    # (mean, projection) of the catalogue's learned whitening, or None: vectors are stored whitened.
    whitening: tuple[np.ndarray, np.ndarray] | None = None
    checked: float = 0.0  # time.monotonic() of the last freshness check

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        if self.whitening is None:
            return vectors
        from ..whitening import apply

        return apply(vectors, *self.whitening)

    def code(self, result_id: str) -> int:
        code = self.result_codes.get(result_id)
        if code is None:
            code = self.result_codes[result_id] = len(self.result_ids)
            self.result_ids.append(result_id)
        return code


class NumpyBackend(BaseBackend):
    """The default backend: exact, in-process, no service needed. Right up to ~1M vectors."""

    reads_rows = True

    def __init__(self, alias: str = "default", **options):
        super().__init__(alias, **options)
        self._matrices: dict[tuple[int, str], _Matrix] = {}
        self._lock = threading.Lock()

    def add(self, embeddings: Sequence) -> None:
        """The rows are the index: the next search here checks them at once, other processes
        within ``REFRESH_INTERVAL``."""
        self._expire()

    def remove(self, embedding_ids: Collection[int]) -> None:
        """As :meth:`add`: the next search notices the rows are gone."""
        self._expire()

    def expire(self) -> None:
        self.reset()

    def _expire(self) -> None:
        for matrix in list(self._matrices.values()):
            matrix.checked = 0.0

    def reset(self) -> None:
        with self._lock:
            self._matrices.clear()

    def search(self, vector, *, result_type_id, fingerprint, limit, restrict_to=None, exclude=()) -> list[Hit]:
        matrix = self._refresh(result_type_id, fingerprint)
        if not len(matrix.ids) or limit <= 0:
            return []
        query = matrix.transform(np.asarray(vector, dtype=np.float32))
        scores = matrix.vectors @ query
        allowed = np.ones(len(scores), dtype=bool)
        if restrict_to is not None:
            wanted = [matrix.result_codes[r] for r in map(str, restrict_to) if r in matrix.result_codes]
            allowed &= np.isin(matrix.codes, np.asarray(wanted, dtype=np.int64))
        if exclude:
            unwanted = [matrix.result_codes[r] for r in map(str, exclude) if r in matrix.result_codes]
            allowed &= ~np.isin(matrix.codes, np.asarray(unwanted, dtype=np.int64))
        scores = np.where(allowed, scores, -np.inf)
        expanded = _expand(query, scores, matrix.vectors)
        if expanded is None:
            return _best_per_result(scores, matrix, limit)
        # Scores are then similarities to the expanded query: still best first, and an identical
        # image scores a little under 1.0.
        return _best_per_result(np.where(allowed, matrix.vectors @ expanded, -np.inf), matrix, limit)

    # -- keeping the matrix in step with the rows ------------------------------------------------

    def _rows(self, result_type_id: int, fingerprint: str):
        from ..models import ImageEmbedding

        return ImageEmbedding.objects.ready(fingerprint).filter(result_type_id=result_type_id)

    def _refresh(self, result_type_id: int, fingerprint: str) -> _Matrix:
        from ..conf import settings
        from ..models import Whitening

        key = (result_type_id, fingerprint)
        matrix = self._matrices.get(key)
        interval = float(settings.REFRESH_INTERVAL)
        if matrix is not None and interval > 0 and time.monotonic() - matrix.checked < interval:
            return matrix
        rows = self._rows(result_type_id, fingerprint)
        stats = rows.aggregate(n=Count("id"), newest=Max("updated_at"))
        whitenings = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint)
        stamp = whitenings.values_list("updated_at", flat=True).first()
        signature = (stats["n"], stats["newest"], stamp)
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is not None and matrix.signature == signature:
                matrix.checked = time.monotonic()
                return matrix
            if matrix is None or (matrix.signature and matrix.signature[2] != stamp):
                # New whitening: every stored vector is transformed again, from the rows.
                whitening = whitenings.first() if stamp is not None else None
                matrix = _Matrix(whitening=whitening.arrays() if whitening is not None else None)
            matrix = self._matrices[key] = self._update(matrix, rows, stats)
            matrix.signature = signature
            matrix.checked = time.monotonic()
            return matrix

    def _update(self, matrix: _Matrix, rows, stats) -> _Matrix:
        changed = rows if matrix.newest is None else rows.filter(updated_at__gte=matrix.newest - COMMIT_SKEW)
        new_ids, new_codes, new_vectors = [], [], []
        for row_id, result_id, blob in changed.values_list("id", "result_id", "vector").iterator(chunk_size=2000):
            vector = np.frombuffer(bytes(blob), dtype=np.float32)
            n = matrix.position.get(row_id)
            if n is None:
                new_ids.append(row_id)
                new_codes.append(matrix.code(result_id))
                new_vectors.append(vector)
            else:
                matrix.codes[n], matrix.vectors[n] = matrix.code(result_id), matrix.transform(vector[None])[0]
        if new_vectors:
            new_vectors = list(matrix.transform(np.vstack(new_vectors)))
        if new_ids:
            base = len(matrix.ids)
            matrix.position.update((int(i), base + k) for k, i in enumerate(new_ids))
            matrix.ids = np.concatenate([matrix.ids, np.asarray(new_ids, dtype=np.int64)])
            matrix.codes = np.concatenate([matrix.codes, np.asarray(new_codes, dtype=np.int64)])
            stacked = np.vstack(new_vectors)
            matrix.vectors = np.vstack([matrix.vectors, stacked]) if len(matrix.vectors) else stacked
        if len(matrix.ids) != stats["n"]:
            # Some rows were deleted (or left the ready set): keep only those still there.
            alive = np.fromiter(rows.values_list("id", flat=True).iterator(), dtype=np.int64)
            keep = np.isin(matrix.ids, alive)
            matrix.ids, matrix.codes, matrix.vectors = matrix.ids[keep], matrix.codes[keep], matrix.vectors[keep]
            matrix.position = {int(i): n for n, i in enumerate(matrix.ids)}
        matrix.newest = stats["newest"]
        return matrix


def _expand(query: np.ndarray, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
    """alpha-QE: the query plus its best matches weighted by similarity**alpha, or None when off."""
    from ..conf import settings

    k = int(settings.QUERY_EXPANSION or 0)
    finite = int(np.isfinite(scores).sum())
    if k <= 0 or finite <= k:
        return None
    top = np.argpartition(-scores, k - 1)[:k]
    weights = np.power(np.maximum(scores[top], 0.0), float(settings.QUERY_EXPANSION_ALPHA))
    expanded = query + (weights[:, None] * vectors[top]).sum(axis=0)
    return expanded / max(float(np.linalg.norm(expanded)), 1e-12)


def _best_per_result(scores: np.ndarray, matrix: _Matrix, limit: int) -> list[Hit]:
    """Top ``limit`` results, each once with its best-scoring vector."""
    finite = int(np.isfinite(scores).sum())
    # Look at a few times more vectors than wanted (a product may have several images), and at
    # everything only when that was not enough distinct results.
    for width in (min(finite, limit * 8), finite):
        if width <= 0:
            return []
        top = np.argpartition(-scores, width - 1)[:width] if width < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        hits: list[Hit] = []
        seen: set[int] = set()
        for n in top:
            if not np.isfinite(scores[n]):
                break
            code = int(matrix.codes[n])
            if code not in seen:
                seen.add(code)
                hits.append(Hit(matrix.result_ids[code], float(scores[n])))
                if len(hits) == limit:
                    return hits
        if width == finite:
            return hits
    return hits
