"""The contract every vector index backend fulfils: store vectors, find the nearest ones.

A backend adds, removes and rebuilds vectors, and opens a :meth:`~BaseBackend.space` in which the
nearest ones are found. How a search ranks them (query expansion, one result per product) is not
the backend's business: :mod:`visual_search.ranking` does it once for every backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence

import numpy as np
from django.apps import apps

from .. import ranking
from ..batching import row_chunks
from ..ranking import Hit, Neighbours, VectorSpace


class EmptySpace:
    """The space of a model with no vector yet: every search finds nothing."""

    def transform(self, vector: np.ndarray) -> np.ndarray:
        return vector

    def allow(self, restrict_to, exclude) -> None:
        return None

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False) -> Neighbours:
        return Neighbours()

    def result_vectors(self, result_ids) -> dict[str, np.ndarray]:
        return {}


def group_by_result(result_ids: Sequence[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
    """``{result_id: its vectors (n, d)}`` from one vector per row and the result of each row."""
    rows: dict[str, list[int]] = {}
    for n, result_id in enumerate(result_ids):
        rows.setdefault(result_id, []).append(n)
    return {result_id: vectors[index] for result_id, index in rows.items()}


class BaseBackend:
    """A vector index over :class:`~visual_search.models.ImageEmbedding` rows.

    The database rows are the source of truth: vectors are stored there first, then handed to
    ``add``. A backend may keep its own copy (an ANN index, a pgvector column) but must answer from
    what is committed, in whichever process asks, without a restart. To be searchable a backend
    implements :meth:`space`; :meth:`search` is then the ranking over it.
    """

    # True when the backend reads vectors from the ImageEmbedding rows itself, so ``add`` and
    # ``remove`` need do nothing in the writing process: the rows are the index.
    reads_rows = False
    # True when reset() deletes persistent data of every model (pgvector's tables), so refilling one
    # model must rebuild that model's vectors only (whitening_changed), never reset the whole backend.
    reset_drops_everything = False

    # What forget_fingerprints() deletes, as `visual_search_versions prune` reports it: one, several,
    # and where from (may be empty).
    store_names: tuple[str, str, str] = ("store", "stores", "")

    # True when whatever the backend keeps in the process or outside the database (matrices, index
    # files, caches) is kept per schema on a django-tenants platform (visual_search/tenants.py), where
    # the same content type id and row ids name each shop's own products. get_backend() refuses one
    # that does not while a schema is active, rather than answer one shop from another's vectors;
    # the check visual_search.E041 says so first.
    serves_tenants = False

    # The OPTIONS keys this backend reads: ``check`` warns of any other (a misspelt one was ignored,
    # and its default used). None: not declared (a backend of your own), nothing checked.
    option_names: tuple[str, ...] | None = None

    def __init__(self, alias: str = "default", **options):
        self.alias = alias
        self.options = options

    @classmethod
    def setup_problems(cls, options: dict) -> list[str]:
        """What keeps this backend from working in this project with these ``OPTIONS`` (``check``
        reports each as an error before the first search would fail); none by default."""
        return []

    def add(self, embeddings: Sequence) -> None:
        """Index (or re-index) these ready ``ImageEmbedding`` rows."""
        raise NotImplementedError(f"{type(self).__name__} does not implement add(): docs/backends.md, 'Writing a backend'.")

    def remove(self, embedding_ids: Collection[int]) -> None:
        """Forget these ``ImageEmbedding`` ids."""
        raise NotImplementedError(f"{type(self).__name__} does not implement remove(): docs/backends.md, 'Writing a backend'.")

    def expire(self) -> None:
        """Forget what this process keeps in memory, so the next search reads the stored state
        again (a switch of model version). Unlike :meth:`reset`, never drops persistent data."""

    def forget_fingerprints(self, keep: Collection[str]) -> int:
        """Delete what the backend stores of its own for every fingerprint not in ``keep``, and
        return how many stores (as :attr:`store_names` names them: FAISS files, pgvector tables)
        went. :func:`~visual_search.versions.prune` calls it once the rows of those fingerprints
        are deleted: nothing searches them any more, and a store left behind would grow the disk
        with every retrained version. Never touch a kept fingerprint's, and let a build or refit
        of a dropped one running meanwhile finish first. The default keeps nothing of its own: 0."""
        return 0

    def whitening_changed(self, result_type_id: int, fingerprint: str) -> None:
        """The ``Whitening`` of this model was just (re)learned, in this process.

        Every transformed vector changes. A backend that reads the rows itself (``reads_rows``:
        NumPy) drops what this process keeps and reloads; other processes notice the new
        ``updated_at`` within ``REFRESH_INTERVAL``. Any other backend keeps its own copy, so by
        default this model's ready rows of ``fingerprint`` are handed to :meth:`add` again (in
        chunks of ``REBUILD_CHUNK``), then :meth:`finish`: the default used to call :meth:`reset`,
        which left a backend of a shop's own, keeping vectors in its own store, empty after every
        whitening refit. Override it to rewrite the vectors in place (pgvector) or rebuild lazily
        (FAISS).
        """
        if self.reads_rows:
            self.reset()
            return
        # Through the app registry: this module is importable before Django is set up (no models).
        embeddings = apps.get_model("visual_search", "ImageEmbedding").objects
        rows = embeddings.ready(fingerprint).filter(result_type_id=result_type_id).order_by("pk")
        for chunk in row_chunks(rows, REBUILD_CHUNK):
            self.add(chunk)
        self.finish()

    def space(self, result_type_id: int, fingerprint: str) -> contextlib.AbstractContextManager[VectorSpace]:
        """The stored vectors of one searchable model and fingerprint, as a :class:`~visual_search.ranking.VectorSpace`.

        A context manager: what it yields stays consistent (one index, one whitening) until it exits.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement space(): docs/backends.md, 'Writing a backend'.")

    def search(
        self,
        vector: np.ndarray,
        *,
        result_type_id: int,
        fingerprint: str,
        limit: int,
        restrict_to: Collection[str] | None = None,
        exclude: Collection[str] = (),
        policy: ranking.Policy | None = None,
    ) -> list[Hit]:
        """The ``limit`` results of ``result_type_id`` most similar to the unit ``vector``.

        Each result appears once, with the best score over its images. ``restrict_to`` (result
        ids) limits the candidates; ``exclude`` removes some. Only ``fingerprint`` vectors count.
        Ranked by :func:`visual_search.ranking.rank` in this backend's :meth:`space`, by ``policy``
        (default: the settings', uncalibrated).
        """
        if limit <= 0:
            return []
        with self.space(result_type_id, fingerprint) as space:
            return ranking.rank(
                space, vector, limit=limit, restrict_to=restrict_to, exclude=exclude, policy=policy,
                is_copy=lambda result_id: self.is_copy(vector, result_type_id, fingerprint, result_id),
            )

    def is_copy(self, vector: np.ndarray, result_type_id: int, fingerprint: str, result_id: str) -> bool:
        """Whether the photo of unit ``vector`` is a copy of one of ``result_id``'s images: a stored,
        unwhitened vector at least ``ranking.COPY_RAW_SIMILARITY`` similar (asked once a search, of
        its best result, only when its whitened similarity says it may be; one query)."""
        rows = apps.get_model("visual_search", "ImageEmbedding").objects.ready(fingerprint)
        stored = rows.filter(result_type_id=result_type_id, result_id=result_id).values_list("vector", flat=True)
        query = np.asarray(vector, dtype=np.float32)
        query = query / (np.linalg.norm(query) or 1.0)
        for data in stored:
            if data:
                other = np.frombuffer(data, dtype=np.float32)
                if other.shape == query.shape and float(other @ query) / (float(np.linalg.norm(other)) or 1.0) >= ranking.COPY_RAW_SIMILARITY:
                    return True
        return False

    def repair(self, result_type_id: int, fingerprint: str) -> int:
        """Add the ready rows of this model and fingerprint that the backend lacks, or holds an
        older vector of; returns how many. The sweep calls it: a worker killed, or the database
        lost, between a row's commit and its ``add`` leaves a ready row unsearchable, and no later
        task would notice (the image is unchanged). Backends that read the rows themselves
        (NumPy, FAISS) lack nothing: 0."""
        return 0

    def reset(self) -> None:
        """Drop whatever the backend keeps of its own, to be rebuilt from the rows."""
        raise NotImplementedError(f"{type(self).__name__} does not implement reset(): docs/backends.md, 'Writing a backend'.")

    def finish(self) -> None:
        """Called by :meth:`rebuild` after the last ``add``: build or save an index here if need be."""

    def rebuild(self, rows, *, progress: Callable[[int], None] | None = None) -> int:
        """Fill the backend from the stored vectors of ``rows`` (ready ``ImageEmbedding`` rows).

        What switching backends runs (``manage.py visual_search_rebuild_index``): ``reset()``, then
        ``add()`` in chunks of ``REBUILD_CHUNK`` rows, calling ``progress(n)`` after each, then
        ``finish()``. No embedding is recomputed: the vectors are read from the rows. Returns how
        many rows were handed over. A backend that reads the rows itself only resets.
        """
        if self.reads_rows:
            self.reset()
            count = rows.count()
            if progress and count:
                progress(count)
            return count
        self.reset()
        count = 0
        for chunk in row_chunks(rows.order_by("pk"), REBUILD_CHUNK):
            self.add(chunk)
            count += len(chunk)
            if progress:
                progress(len(chunk))
        self.finish()
        return count


# Rows handed to ``add`` at a time by ``rebuild``: 2,000 vectors of 512 floats are 4 MB.
REBUILD_CHUNK = 2000


@contextlib.contextmanager
def holding(space: VectorSpace) -> Iterator[VectorSpace]:
    """A space that needs nothing released, as :meth:`BaseBackend.space` returns it."""
    yield space


__all__ = ["BaseBackend", "EmptySpace", "Hit", "Neighbours", "group_by_result", "holding"]
