"""PCA whitening learned on the shop's own catalogue (Jégou & Chum 2012; Radenović et al. 2018).

Raw VGG16 features are dominated by a few directions that every product photo shares (shelf,
lighting, packaging texture), so plain cosine similarity ranks poorly and every score looks like
"0.99". Whitening learned on the catalogue's own vectors removes the shared mean, decorrelates the
dimensions, scales each to unit variance and keeps the ``WHITENING_DIMS`` strongest: matches then
depend on what tells products apart. It is a fixed linear map, fitted from stored vectors in
seconds, so stored embeddings never need recomputing: the backend applies it to the catalogue
matrix and to each query. Measured by ``python -m benchmarks quality`` (see the README).
"""

from __future__ import annotations

import logging

import numpy as np
from django.contrib.contenttypes.models import ContentType

from .backends import get_backend
from .conf import settings
from .embeddings.fingerprint import current_fingerprint
from .embeddings.pooling import l2_normalise

logger = logging.getLogger("visual_search")


def fit_arrays(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and projection ``(d, dims)`` that whiten ``vectors`` (one per row)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = vectors.mean(axis=0)
    values, axes = np.linalg.eigh(np.cov((vectors - mean).T))
    order = np.argsort(values)[::-1][:dims]
    projection = axes[:, order] / np.sqrt(np.maximum(values[order], 1e-9))[None, :]
    return mean.astype(np.float32), projection.astype(np.float32)


def apply(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Whitened, L2-normalised copies of ``vectors`` (a 1-d vector or one per row)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return l2_normalise((vectors - mean) @ projection)


def fit(result_model=None, fingerprint: str | None = None) -> list:
    """Learn (or re-learn) the whitening of each searchable model from its ready vectors.

    Of the current fingerprint's vectors, or of ``fingerprint``'s (a version being built gets its
    whitening before searches switch to it). Skipped while a model has fewer than ``WHITENING_MIN_VECTORS`` ready vectors (too few to
    estimate a covariance; plain cosine is used meanwhile). Returns the ``Whitening`` rows saved.
    """
    from .models import ImageEmbedding, Whitening
    from .registry import get_registrations

    if not settings.WHITENING:
        return []
    fingerprint = fingerprint or current_fingerprint()
    models = {r.result_model for r in get_registrations() if result_model in (None, r.result_model)}
    saved = []
    for model in models:
        result_type = ContentType.objects.get_for_model(model)
        rows = ImageEmbedding.objects.ready(fingerprint).filter(result_type=result_type)
        ids = np.fromiter(rows.values_list("id", flat=True).iterator(), dtype=np.int64)
        count = len(ids)
        if count < int(settings.WHITENING_MIN_VECTORS):
            logger.info("Not whitening %s: %s ready vectors, %s needed", model._meta.label, count, settings.WHITENING_MIN_VECTORS)
            continue
        vectors = _sample_vectors(rows, ids)
        dims = min(int(settings.WHITENING_DIMS), vectors.shape[1], count - 1)
        mean, projection = fit_arrays(vectors, dims)
        row, _ = Whitening.objects.update_or_create(
            result_type=result_type,
            fingerprint=fingerprint,
            defaults={"dimensions": dims, "trained_on": count, "mean": mean.tobytes(), "projection": projection.tobytes()},
        )
        saved.append(row)
        get_backend().whitening_changed(result_type.pk, fingerprint)
        logger.info("Whitening of %s learned from %s vectors (%s dimensions)", model._meta.label, count, dims)
    return saved


# A covariance of 512 dimensions is estimated well from this many vectors; more only costs time.
SAMPLE = 100_000


def _sample_vectors(rows, ids: np.ndarray) -> np.ndarray:
    if len(ids) > SAMPLE:
        ids = np.sort(np.random.default_rng(0).choice(ids, SAMPLE, replace=False))
    blobs = []
    for start in range(0, len(ids), 5000):
        chunk = [int(i) for i in ids[start : start + 5000]]
        blobs += rows.filter(id__in=chunk).values_list("vector", flat=True)
    return np.stack([np.frombuffer(bytes(b), dtype=np.float32) for b in blobs])


def needs_refit(result_type_id: int, fingerprint: str, ready: int) -> bool:
    """True when there is no whitening yet, or the catalogue grew by ``WHITENING_REFIT_GROWTH``."""
    from .models import Whitening

    if not settings.WHITENING or ready < int(settings.WHITENING_MIN_VECTORS):
        return False
    row = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).only("trained_on").first()
    return row is None or ready >= row.trained_on * (1 + float(settings.WHITENING_REFIT_GROWTH))


def fit_if_needed(fingerprint: str | None = None) -> list:
    """Fit the whitening of every searchable model that has none yet or has grown (see ``needs_refit``).

    For the current fingerprint, or for ``fingerprint`` (a model version about to be activated).
    """
    from .models import ImageEmbedding
    from .registry import get_registrations

    if not settings.WHITENING:
        return []
    fingerprint = fingerprint or current_fingerprint()
    saved = []
    for model in {r.result_model for r in get_registrations()}:
        result_type = ContentType.objects.get_for_model(model)
        ready = ImageEmbedding.objects.ready(fingerprint).filter(result_type=result_type).count()
        if needs_refit(result_type.pk, fingerprint, ready):
            saved += fit(model, fingerprint)
    return saved
