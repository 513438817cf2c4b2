"""The shop's learned whitening: one :class:`~visual_search.models.Whitening` row per searchable
model and fingerprint, fitted from the stored vectors and refitted as the catalogue grows.

What whitening does, and the transform itself, are :mod:`visual_search.ranking`'s; this module
decides when to learn it and stores it. Fitting takes seconds and never recomputes an embedding:
backends apply the stored map to the catalogue and to each query.
"""

from __future__ import annotations

import logging

import numpy as np
from django.contrib.contenttypes.models import ContentType

from .backends import get_backend
from .conf import settings
from .models import ImageEmbedding, Whitening
from .ranking import fit_whitening
from .registry import get_registrations
from .serving import current_fingerprint

logger = logging.getLogger("visual_search")


def fit(result_model=None, fingerprint: str | None = None) -> list:
    """Learn (or re-learn) the whitening of each searchable model from its ready vectors.

    Of the current fingerprint's vectors, or of ``fingerprint``'s (a version being built gets its
    whitening before searches switch to it). Skipped while a model has fewer than ``WHITENING_MIN_VECTORS`` ready vectors (too few to
    estimate a covariance; plain cosine is used meanwhile). Returns the ``Whitening`` rows saved.
    """
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
        mean, projection = fit_whitening(vectors, dims)
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
    if not settings.WHITENING or ready < int(settings.WHITENING_MIN_VECTORS):
        return False
    row = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).only("trained_on").first()
    return row is None or ready >= row.trained_on * (1 + float(settings.WHITENING_REFIT_GROWTH))


def fit_if_needed(fingerprint: str | None = None) -> list:
    """Fit the whitening of every searchable model that has none yet or has grown (see ``needs_refit``).

    For the current fingerprint, or for ``fingerprint`` (a model version about to be activated).
    """
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
