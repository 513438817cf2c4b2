"""Ranking: from stored vectors to the list a customer sees. The one place for retrieval policy.

Storage backends (:mod:`visual_search.backends`) only keep vectors and find the nearest ones; how a
search uses them lives here, once, for every backend, the training evaluation and the benchmarks:

- **Whitening** (Jégou & Chum 2012; Radenović et al. 2018): raw VGG16 features are dominated by a
  few directions every product photo shares (shelf, lighting, packaging texture), so plain cosine
  ranks poorly and every score looks like "0.99". A PCA learned on the catalogue's own vectors
  removes the shared mean, decorrelates and rescales the dimensions and keeps the strongest ones
  (:func:`fit_whitening`, :func:`whiten`). It is a fixed linear map, so stored vectors never need
  recomputing: backends apply it to the catalogue and to each query (:func:`transform`).
- **Query expansion** (alpha-QE, Radenović et al.): search again with the query averaged with its
  best matches, weighted by similarity**alpha (:func:`expand`).
- **One result per product**: a product with several images appears once, scored by its best
  image (:func:`best_per_result`).

:func:`rank` runs a search over anything that behaves as a :class:`VectorSpace`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .conf import settings
from .embeddings.pooling import l2_normalise

# Vectors fetched per result wanted: a product may have several images.
ROWS_PER_RESULT = 8

Whitening = tuple[np.ndarray, np.ndarray]  # (mean, projection)


@dataclass(frozen=True)
class Hit:
    """One search result: the id of the object a match stands for, and its best cosine similarity."""

    result_id: str
    score: float


@dataclass
class Neighbours:
    """The stored vectors nearest to a query, best first.

    ``exact`` says the backend compared the query with every allowed vector: with fewer than ``k``
    rows it then returned all there are. ``vectors`` (in the backend's transformed space) only
    when asked for.
    """

    result_ids: Sequence[str] = ()
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    vectors: np.ndarray | None = None
    exact: bool = True

    def __len__(self) -> int:
        return len(self.result_ids)


class VectorSpace(Protocol):
    """What a backend gives :func:`rank`: one model's vectors of one fingerprint, as stored."""

    def transform(self, vector: np.ndarray) -> np.ndarray:
        """A query vector brought into the stored vectors' space (whitened, unit length)."""

    def allow(self, restrict_to: Collection[str] | None, exclude: Collection[str]) -> Any:
        """A filter for :meth:`nearest`: only ``restrict_to`` results (None: all), none of ``exclude``."""

    def nearest(self, query: np.ndarray, k: int, allowed: Any, *, exact: bool = False, with_vectors: bool = False) -> Neighbours:
        """The ``k`` allowed vectors most similar to a transformed ``query``; ``exact`` compares all."""


@dataclass(frozen=True)
class Policy:
    """How searches rank: query expansion over ``expansion`` matches with weights ``score**alpha``."""

    expansion: int = 0
    alpha: float = 3.0

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(expansion=int(settings.QUERY_EXPANSION or 0), alpha=float(settings.QUERY_EXPANSION_ALPHA))


# -- whitening ------------------------------------------------------------------------------------

def fit_whitening(vectors: np.ndarray, dims: int) -> Whitening:
    """Mean and projection ``(d, dims)`` that whiten ``vectors`` (one per row)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = vectors.mean(axis=0)
    values, axes = np.linalg.eigh(np.cov((vectors - mean).T))
    order = np.argsort(values)[::-1][:dims]
    projection = axes[:, order] / np.sqrt(np.maximum(values[order], 1e-9))[None, :]
    return mean.astype(np.float32), projection.astype(np.float32)


def whiten(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Whitened, L2-normalised copies of ``vectors`` (a 1-d vector or one per row)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return l2_normalise((vectors - mean) @ projection)


def transform(vectors: np.ndarray, whitening: Whitening | None) -> np.ndarray:
    """Vectors as a backend stores and compares them: whitened when there is a whitening, unit length."""
    if whitening is None:
        return l2_normalise(vectors)
    return whiten(vectors, *whitening)


# -- query expansion and collapsing ------------------------------------------------------------

def expand(queries: np.ndarray, top_scores: np.ndarray, top_vectors: np.ndarray, alpha: float) -> np.ndarray:
    """alpha-QE: each query ``(q, d)`` plus its best matches ``(q, k, d)`` weighted by ``score**alpha``, unit length."""
    weights = np.power(np.maximum(np.asarray(top_scores, dtype=np.float32), 0.0), alpha)
    expanded = np.asarray(queries, dtype=np.float32) + np.einsum("qk,qkd->qd", weights, np.asarray(top_vectors, dtype=np.float32))
    return l2_normalise(expanded)


def best_per_result(result_ids: Sequence[str], scores: np.ndarray, limit: int) -> list[Hit]:
    """The first ``limit`` distinct results of a best-first list, each with its best score."""
    hits: list[Hit] = []
    seen: set[str] = set()
    for result_id, score in zip(result_ids, np.asarray(scores, dtype=np.float64).tolist()):
        if result_id in seen or not np.isfinite(score):
            continue
        seen.add(result_id)
        hits.append(Hit(result_id, float(score)))
        if len(hits) == limit:
            break
    return hits


# -- a search -----------------------------------------------------------------------------------

def rank(
    space: VectorSpace,
    vector: np.ndarray,
    *,
    limit: int,
    restrict_to: Collection[str] | None = None,
    exclude: Collection[str] = (),
    policy: Policy | None = None,
) -> list[Hit]:
    """The ``limit`` results most similar to a unit ``vector``, best first, each once.

    Looks at ``ROWS_PER_RESULT`` vectors per result wanted, and at every allowed vector when that
    gave too few distinct results (a filter, or many images per product).
    """
    if limit <= 0:
        return []
    policy = policy or Policy.from_settings()
    allowed = space.allow(restrict_to, exclude)
    query = space.transform(np.asarray(vector, dtype=np.float32))
    if policy.expansion > 0:
        query = _expanded(space, query, allowed, policy)
    k, exact = limit * ROWS_PER_RESULT, False
    while True:
        found = space.nearest(query, k, allowed, exact=exact)
        hits = best_per_result(found.result_ids, found.scores, limit)
        if len(hits) == limit or (found.exact and len(found) < k):
            return hits
        k, exact = k * ROWS_PER_RESULT, True


def _expanded(space: VectorSpace, query: np.ndarray, allowed: Any, policy: Policy) -> np.ndarray:
    """The expanded query; the query itself when no more than ``expansion`` vectors are allowed.

    Scores are then similarities to the expanded query: still best first, and an identical image
    scores a little under 1.0.
    """
    k = policy.expansion
    top = space.nearest(query, k + 1, allowed, with_vectors=True)
    if len(top) <= k:
        return query
    return expand(query[None], top.scores[None, :k], top.vectors[None, :k], policy.alpha)[0]


def score_matrix(queries: np.ndarray, gallery: np.ndarray, *, whitening_dims: int | None, policy: Policy) -> np.ndarray:
    """Scores ``(q, g)`` of many queries against a gallery, ranked as :func:`rank` ranks one.

    For held-out measurements (training evaluation, benchmarks): the whitening is learned on the
    gallery only, as a shop learns it on its catalogue, never on the queries.
    """
    queries, gallery = l2_normalise(queries), l2_normalise(gallery)
    if whitening_dims and len(gallery) > whitening_dims:
        whitening = fit_whitening(gallery, min(int(whitening_dims), gallery.shape[1]))
        queries, gallery = whiten(queries, *whitening), whiten(gallery, *whitening)
    return expand_against(queries, gallery, policy) @ gallery.T


def expand_against(queries: np.ndarray, gallery: np.ndarray, policy: Policy) -> np.ndarray:
    """Each query expanded with its ``policy.expansion`` best gallery vectors (unchanged when off)."""
    k = policy.expansion
    if k <= 0 or gallery.shape[0] <= k:
        return queries
    scores = queries @ gallery.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return expand(queries, np.take_along_axis(scores, top, axis=1), gallery[top], policy.alpha)
