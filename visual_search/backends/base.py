"""The contract every vector index backend fulfils."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hit:
    """One search result: the id of the object a match stands for, and its best cosine similarity."""

    result_id: str
    score: float


class BaseBackend:
    """A vector index over :class:`~visual_search.models.ImageEmbedding` rows.

    The database rows are the source of truth: vectors are stored there first, then handed to
    ``add``. A backend may keep its own copy (an ANN index, a pgvector column) but must answer from
    what is committed, in whichever process asks, without a restart.
    """

    # True when the backend reads vectors from the ImageEmbedding rows itself, so ``add`` and
    # ``remove`` need do nothing in the writing process: the rows are the index.
    reads_rows = False

    def __init__(self, alias: str = "default", **options):
        self.alias = alias
        self.options = options

    def add(self, embeddings: Sequence) -> None:
        """Index (or re-index) these ready ``ImageEmbedding`` rows."""
        raise NotImplementedError

    def remove(self, embedding_ids: Collection[int]) -> None:
        """Forget these ``ImageEmbedding`` ids."""
        raise NotImplementedError

    def whitening_changed(self, result_type_id: int, fingerprint: str) -> None:
        """The ``Whitening`` of this model was just (re)learned, in this process.

        Every transformed vector changes. The default drops what this process keeps (the NumPy
        backend reloads now, other processes notice the new ``updated_at`` within
        ``REFRESH_INTERVAL``); a backend that stores transformed vectors rewrites them instead.
        """
        self.reset()

    def search(
        self,
        vector: np.ndarray,
        *,
        result_type_id: int,
        fingerprint: str,
        limit: int,
        restrict_to: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """The ``limit`` results of ``result_type_id`` most similar to the unit ``vector``.

        Each result appears once, with the best score over its images. ``restrict_to`` (result
        ids) limits the candidates; ``exclude`` removes some. Only ``fingerprint`` vectors count.
        """
        raise NotImplementedError

    def reset(self) -> None:
        """Drop whatever the backend keeps of its own, to be rebuilt from the rows."""
        raise NotImplementedError
