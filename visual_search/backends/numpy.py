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

import numpy as np

from ..batching import row_chunks
from ..ranking import ArraySpace, transform
from ..tenants import per_tenant
from .base import BaseBackend, holding
from .rows import ResultCodes, Snapshot, due


# Rows read, and vectors transformed, at a time when the matrix is loaded: transformed block by block,
# a first search's load of 100,000 vectors (200 MB) peaked at 740 MB, every raw vector, their stack
# and its whitened copy held at once, then stacked again. Read page by page on MySQL (row_chunks),
# whose driver held every raw vector of the result at once (about 2.8 times the catalogue).
LOAD_CHUNK = 2000


@dataclass
class _Matrix(ResultCodes):
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    signature: tuple | None = None
    newest: object = None
    position: dict[int, int] = field(default_factory=dict)
    # (mean, projection) of the catalogue's learned whitening: the vectors are kept whitened.
    whitening: tuple[np.ndarray, np.ndarray] | None = None
    # The catalogue outgrew its whitening (rows.outgrown): no confident result (rows.searched_with).
    outgrown: bool = False
    checked: float = 0.0  # time.monotonic() of the last freshness check

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return transform(vectors, self.whitening)


class NumpyBackend(BaseBackend):
    """The default backend: exact, in-process, no service needed. Right up to ~1M vectors."""

    reads_rows = True
    option_names = ()
    serves_tenants = True  # its matrices are per schema (_refresh)

    def __init__(self, alias: str = "default", **options):
        super().__init__(alias, **options)
        # By (result type, fingerprint), and by schema on a multi-tenant platform (tenants.py): the
        # same content type id names each shop's own products there.
        self._matrices: dict[tuple, _Matrix] = {}
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

    def space(self, result_type_id: int, fingerprint: str):
        # The arrays as they are now; a refresh that adds or drops rows makes new ones.
        matrix = self._refresh(result_type_id, fingerprint)
        space = ArraySpace(matrix.vectors, matrix.codes, matrix.result_ids, matrix.whitening, None, matrix.result_codes)
        space.outgrown = matrix.outgrown
        return holding(space)

    # -- keeping the matrix in step with the rows ------------------------------------------------

    def _refresh(self, result_type_id: int, fingerprint: str) -> _Matrix:
        key = per_tenant((result_type_id, fingerprint))
        matrix = self._matrices.get(key)
        if matrix is not None and not due(matrix.checked):
            return matrix
        now = Snapshot.read(result_type_id, fingerprint)
        signature = (now.count, now.newest, now.stamp)
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is not None and matrix.signature == signature and now.settled:
                matrix.checked = time.monotonic()
                return matrix
            if matrix is None or (matrix.signature and matrix.signature[2] != now.stamp):
                # New whitening: every stored vector is transformed again, from the rows.
                matrix = _Matrix(whitening=now.whitening.arrays() if now.whitening is not None else None)
            matrix = self._matrices[key] = self._update(matrix, now)
            matrix.outgrown = now.outgrown
            matrix.signature = signature
            matrix.checked = time.monotonic()
            return matrix

    def _update(self, matrix: _Matrix, now: Snapshot) -> _Matrix:
        new_ids, new_codes, new_blocks = self._read(matrix, now.changed_since(matrix.newest))
        if new_ids:
            base = len(matrix.ids)
            matrix.position.update((int(i), base + k) for k, i in enumerate(new_ids))
            matrix.ids = np.concatenate([matrix.ids, np.asarray(new_ids, dtype=np.int64)])
            matrix.codes = np.concatenate([matrix.codes, np.asarray(new_codes, dtype=np.int64)])
            blocks = [matrix.vectors, *new_blocks] if len(matrix.vectors) else new_blocks
            matrix.vectors = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        if len(matrix.ids) != now.count:
            # Some rows were deleted (or left the ready set): keep only those still there.
            alive = np.fromiter(now.rows.values_list("id", flat=True).iterator(), dtype=np.int64)
            keep = np.isin(matrix.ids, alive)
            matrix.ids, matrix.codes, matrix.vectors = matrix.ids[keep], matrix.codes[keep], matrix.vectors[keep]
            matrix.position = {int(i): n for n, i in enumerate(matrix.ids)}
        matrix.newest = now.newest
        return matrix

    @staticmethod
    def _read(matrix: _Matrix, changed) -> tuple[list, list, list[np.ndarray]]:
        """The ids, result codes and transformed vectors of the ``changed`` rows that ``matrix``
        lacks (those it holds are replaced in place): each chunk of raw rows is freed once its
        vectors are transformed, before the blocks are stacked."""
        new_ids, new_codes, new_blocks = [], [], []
        for chunk in row_chunks(changed.values_list("id", "result_id", "vector"), LOAD_CHUNK):
            pending = []
            for row_id, result_id, blob in chunk:
                vector = np.frombuffer(bytes(blob), dtype=np.float32)
                n = matrix.position.get(row_id)
                if n is None:
                    new_ids.append(row_id)
                    new_codes.append(matrix.code(result_id))
                    pending.append(vector)
                else:
                    matrix.codes[n], matrix.vectors[n] = matrix.code(result_id), matrix.transform(vector[None])[0]
            if pending:
                new_blocks.append(matrix.transform(np.vstack(pending)))
        return new_ids, new_codes, new_blocks
