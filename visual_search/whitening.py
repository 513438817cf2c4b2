"""The shop's learned whitening and score calibration: one :class:`~visual_search.models.Whitening`
row per searchable model and fingerprint, fitted from the stored vectors and refitted as the
catalogue grows.

What whitening does, the transform itself and the calibration are :mod:`visual_search.ranking`'s;
this module decides when to learn them, from what, and stores them. Fitting never recomputes a
stored embedding: backends apply the stored map to the catalogue and to each query.

A catalogue smaller than ``WHITENING_MIN_VECTORS`` is too small to estimate a covariance from
alone: its images are seen ``WHITENING_AUGMENT`` more times as a customer would photograph them
(:mod:`visual_search.embeddings.augment`), and those vectors join the estimate. They are also
searches whose answer is known that calibrate the scores, where their product has another image to
be found by; a shop of one image per product has no such search, and gets
:data:`~visual_search.ranking.CHANCE_CALIBRATION` (see :func:`calibrate`).
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import router
from django.utils.translation import gettext as _, ngettext

from . import serving
from .backends import get_backend
from .backends import rows as index_rows
from .conf import settings
from .embeddings import images
from .embeddings.augment import customer_view
from .embeddings.pooling import l2_normalise
from .models import ImageEmbedding, Whitening
from .ranking import (
    CANDIDATES,
    CHANCE_CALIBRATION,
    ArraySpace,
    Calibration,
    Policy,
    fit_calibration,
    fit_whitening,
    prior_weight,
    rank,
    transform,
)
from .registry import get_registration, get_registrations
from .serving import current_fingerprint

logger = logging.getLogger("visual_search")

# Searches with a known answer that calibrate the scores: enough for two parameters, quick to run.
CALIBRATION_QUERIES = 400
# The most images seen as customer views (each view is one VGG16 pass per QUERY_VIEWS view).
AUGMENTED_IMAGES = 300
# A catalogue big enough to whiten alone still calibrates on customer views of this many images,
# this many views each: searches of customers' photos, not of the catalogue's own near-copies.
# Measured on the demo's catalogue: top-1 calibration error 0.101 without them, 0.073 with them;
# searching both views of each image (not one, as a small catalogue does) took the first results'
# stated probability from 0.07 below how often they were right to 0.01 below (benchmarks/levers.py).
CALIBRATION_IMAGES, CALIBRATION_VIEWS = 200, 2
# A calibration search also hides this share of the right product's other images, the ones most
# like the query: a customer's photo is not one of a series the shop shot, so its nearest
# same-product image is further away than a catalogue image's twin. Measured (benchmarks/levers.py,
# the 296 val photos): the mean stated probability of first results above how often they were right
# by +0.062 (val catalogue) and +0.055 (demo) without it, +0.016 and +0.019 with it.
CALIBRATION_HIDE_NEAREST = 0.25
# A calibration is learned only from searches whose right product can be found by another image
# than the query's own: a customer view of a product's only image, searched while that image is
# there, finds it every time, unlike a customer's photo (measured: stated 0.999, right 0.125). With
# fewer such searches than this, the scores are CHANCE_CALIBRATION's: not enough to fit two
# parameters on, and a shop of one image per product has none at all.
CALIBRATION_MIN_SEARCHES = 20
# A calibration search hides the image it searches with, so its product is found by one image
# fewer than a customer's photo finds it by. With few images per product that matters: measured
# (benchmarks quality, the 81 products with the catalogue image and 1, 2, 3 shop photos each, the
# 296 val photos) the first result's stated probability was 0.016, 0.269 and 0.457 on average where
# it came true 0.324, 0.402 and 0.470 of the time. Below this many images per product (the
# median), staff were told the scores understate (describe_scores); now the default curve
# is mixed in instead (ranking.prior_weight), and staff are told by how much.
FEW_IMAGES = 4


@dataclass
class Sample:
    """Vectors of one model and fingerprint, the result each stands for and the image it comes from
    (``sources``: the stored image's key; a customer view's is the image it was made from)."""

    vectors: np.ndarray
    result_ids: list[str]
    sources: list | None = None

    def __post_init__(self):
        if self.sources is None:
            self.sources = list(range(len(self.result_ids)))

    def subset(self, rows) -> Sample:
        rows = list(rows)
        return Sample(self.vectors[rows], [self.result_ids[n] for n in rows], [self.sources[n] for n in rows])

    def __len__(self) -> int:
        return len(self.result_ids)


# progress(done, total): images of one model's fit whose customer views went through the network.
FitProgress = Callable[[int, int], None]


def fit(result_model=None, fingerprint: str | None = None, progress: FitProgress | None = None) -> list:
    """Learn (or re-learn) the whitening and calibration of each searchable model from its ready vectors.

    Of the current fingerprint's vectors, or of ``fingerprint``'s (a version being built gets its
    whitening before searches switch to it). A model with fewer than ``WHITENING_MIN_VECTORS`` ready
    vectors adds customer views of its images (``WHITENING_AUGMENT`` per image), or is skipped when
    that is 0 (plain cosine meanwhile). Returns the ``Whitening`` rows saved. ``progress(done, total)``
    follows each model's customer views through the network (``done`` 0: a model's start).
    """
    if not settings.WHITENING:
        return []
    fingerprint = fingerprint or current_fingerprint()
    models = {r.result_model for r in get_registrations() if result_model in (None, r.result_model)}
    return [row for row in (_fit_model(model, fingerprint, progress) for model in models) if row is not None]


def _fit_model(model, fingerprint: str, progress: FitProgress | None = None) -> Whitening | None:
    result_type = ContentType.objects.get_for_model(model)
    # The primary's rows, as in _due(): a version's build fits right after storing its vectors, which
    # a read replica that lags does not have yet (the switch went in with no whitening).
    rows = ImageEmbedding.objects.on_primary().ready(fingerprint).filter(result_type=result_type)
    ids = np.fromiter(rows.values_list("id", flat=True).iterator(), dtype=np.int64)
    count, minimum, augment = len(ids), int(settings.WHITENING_MIN_VECTORS), int(settings.WHITENING_AUGMENT)
    small = count < minimum
    if count < 2 or (small and not augment):
        logger.info("Not whitening %s: %s ready vectors, %s needed", model._meta.label, count, minimum)
        return None
    sample = _sample_vectors(rows, ids)
    customers = None
    if augment:
        per_image, images_seen = (augment, AUGMENTED_IMAGES) if small else (CALIBRATION_VIEWS, CALIBRATION_IMAGES)
        customers = customer_views(rows, fingerprint, per_image, limit=images_seen, progress=progress)
    dims, method = int(settings.WHITENING_DIMS), settings.WHITENING
    mean, projection = learn(sample, customers if small else None, dims, method)
    calibration = calibrate(sample, customers, dims, method, small=small)
    row, _created = Whitening.objects.update_or_create(
        result_type=result_type,
        fingerprint=fingerprint,
        defaults={
            "dimensions": projection.shape[1],
            "trained_on": count,
            "mean": mean.tobytes(),
            "projection": projection.tobytes(),
            "calibration": calibration.as_dict() if calibration is not None else dict(NOTHING_TO_CALIBRATE),
        },
    )
    get_backend().whitening_changed(result_type.pk, fingerprint)
    logger.info("Whitening of %s learned from %s vectors (%s dimensions)", model._meta.label, count, projection.shape[1])
    return row


def learn(sample: Sample, customers: Sample | None, dims: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The whitening (``method``: 'learned' or 'pca', as ``WHITENING``) of ``sample``'s vectors, with
    ``customers``' views joining the estimate (a small catalogue's)."""
    basis = sample if customers is None else Sample(
        np.vstack([sample.vectors, customers.vectors]), sample.result_ids + customers.result_ids
    )
    labels = basis.result_ids if method == "learned" else None
    return fit_whitening(basis.vectors, min(dims, basis.vectors.shape[1], len(basis) - 1), labels)


def customer_views(
    rows, fingerprint: str, per_image: int, limit: int = AUGMENTED_IMAGES, seed: int = 0, progress: FitProgress | None = None
) -> Sample | None:
    """Vectors of ``per_image`` random customer-like views of (up to ``limit``) images of ``rows``,
    seen as customers' photos are (``QUERY_VIEWS``); None when no image could be read.
    ``progress(done, total)`` is told of each image, and of the start (``done`` 0)."""
    extractor = serving.get_extractor(fingerprint)
    rng = random.Random(seed)
    vectors, result_ids, sources = [], [], []
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    chosen = sorted(rng.sample(ids, limit)) if len(ids) > limit else ids  # spread over the catalogue, seeded
    left_out: list[str] = []
    if progress:
        progress(0, len(chosen))
    for done, row in enumerate(rows.filter(pk__in=chosen).select_related("content_type").order_by("pk"), 1):
        if progress and done > 1:
            progress(done - 1, len(chosen))
        try:
            picture = _open(row)
        except Exception as exc:  # a bad or missing file only leaves this image out
            left_out.append(f"{row.content_type} #{row.object_id}: {exc}")
            continue
        if picture is None:
            continue
        views = [customer_view(picture, rng)[0] for _ in range(per_image)]
        vectors.append(extractor.embed_images(views, settings.QUERY_VIEWS))
        result_ids += [row.result_id] * per_image
        sources += [row.pk] * per_image
    if progress:
        progress(len(chosen), len(chosen))
    if left_out:  # one line, not one per file: a catalogue that lost its media folder has thousands
        more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
        logger.info("Whitening: %s of %s sampled images left out, as unreadable: %s%s", len(left_out), len(chosen), left_out[0], more)
    return Sample(np.vstack(vectors), result_ids, sources) if vectors else None


def _open(row: ImageEmbedding):
    """The decoded image of an embedding row, None when its object is gone; raises when unreadable."""
    content_type = row.content_type
    registration = get_registration(f"{content_type.app_label}.{content_type.model}", row.field_name)
    obj = registration.model._default_manager.filter(pk=row.object_id).first()
    if obj is None:
        return None
    data = images.read_bytes(registration.read_image(obj), int(settings.MAX_INDEX_BYTES))
    return images.open_image(data, max_pixels=int(settings.MAX_PIXELS), allowed_formats=list(settings.ALLOWED_FORMATS))


def calibrate(
    sample: Sample, customers: Sample | None, dims: int, method: str | None, *, small: bool = False, policy: Policy | None = None
) -> Calibration | None:
    """The calibration of this catalogue's scores, from searches whose right answer is known, made
    as a customer's photo is searched: by vectors the whitening never learned from.

    Some images of products that have others are set aside (``_held_out``); the whitening (of
    ``dims`` by ``method``, None: none) is learned again without them, and each, with its customer
    views, is searched among the rest. The other images' customer views are searched too, with the
    image they were made from hidden where its product has others (a small catalogue's: half of
    them, its whitening learns from the other half). Each search also hides the product's images
    most like its query (``CALIBRATION_HIDE_NEAREST``). The candidates' scores, as a search computes
    them, against which is the right product. A customer view of a product's only image is not
    searched (it would find that image every time); with fewer than ``CALIBRATION_MIN_SEARCHES``
    searches left, :data:`~visual_search.ranking.CHANCE_CALIBRATION`. None when there is nothing
    to search (no customer views, no product with two images): searches use the default.
    """
    rng = random.Random(0)
    held = _held_out(sample, rng)
    rest = [n for n in range(len(sample)) if sample.sources[n] not in held]
    gallery = sample.subset(rest)
    # (vector, answer, the gallery row of the image it was made from: hidden when its product has others)
    queries = [(sample.vectors[n], sample.result_ids[n], None) for n in range(len(sample)) if sample.sources[n] in held]
    learned_from = None
    if customers is not None:
        row_of = {source: n for n, source in enumerate(gallery.sources)}
        images_of = Counter(gallery.result_ids)
        seen, fit_rows = Counter(), []
        for n, source in enumerate(customers.sources):
            seen[source] += 1
            if source in held or not small or seen[source] % 2 == 0:
                row = row_of.get(source)
                if row is not None and images_of[customers.result_ids[n]] < 2:
                    continue  # its product's only image: found every time, unlike by a customer's photo
                queries.append((customers.vectors[n], customers.result_ids[n], row))
            else:
                fit_rows.append(n)
        learned_from = customers.subset(fit_rows) if small and fit_rows else None
    policy = replace(policy or Policy.from_settings(), calibration=None)
    if len(gallery) < 2 or (not queries and customers is None):
        return None  # nothing to search (WHITENING_AUGMENT 0 and one image per product): the default
    if len(queries) < CALIBRATION_MIN_SEARCHES:
        logger.info("Scores not calibrated: %s searches with a known answer, %s needed; add photos like a "
                    "customer's to the products", len(queries), CALIBRATION_MIN_SEARCHES)
        return replace(CHANCE_CALIBRATION, fitted_on=len(queries), scoring=policy.scoring)
    whitening = learn(gallery, learned_from, dims, method) if method else None
    space = ArraySpace.of(transform(gallery.vectors, whitening), gallery.result_ids)
    twins = _Twins(gallery)
    known_answers = []
    for query, answer, hide in rng.sample(queries, min(len(queries), 2 * CALIBRATION_QUERIES)):
        hidden = twins.nearest(query, answer, hide)
        where = space if not hidden else space.without(hidden)
        hits = rank(where, transform(query, whitening), limit=CANDIDATES, policy=policy)
        if hits:
            found = [hit.result_id for hit in hits]
            known_answers.append(([hit.score for hit in hits], found.index(answer) if answer in found else -1))
    if not known_answers:
        return None
    images = float(np.median(list(Counter(sample.result_ids).values())))
    return replace(fit_calibration(known_answers, policy.scoring), images_per_product=images, prior=prior_weight(images))


def score_notes(fingerprint: str | None = None) -> list[tuple[str, str]]:
    """``("app_label.model", describe_scores(...))`` for each searchable model with a whitening of
    ``fingerprint`` (default: the current one): what staff read in the status command and dashboards."""
    rows = Whitening.objects.filter(fingerprint=fingerprint or current_fingerprint()).select_related("result_type")
    return [(f"{row.result_type.app_label}.{row.result_type.model}", describe_scores(row)) for row in rows]


def describe_scores(row: Whitening) -> str:
    """What a whitening row's calibration makes of the scores, for staff (in the active language):
    how it was learned, or why it could not be and what to do; first, if the catalogue outgrew it
    (:func:`row_outgrown`), that no search is confident until it is learned again."""
    text = _describe_calibration(row)
    if row_outgrown(row):
        text = _(
            "The catalogue has grown to twice what the search tuning was learned from (%(trained)d vectors): no "
            "search states a confident match until it is learned again (the sweep does it with Celery; without, "
            "run `manage.py visual_search_reindex --only missing`)."
        ) % {"trained": row.trained_on} + " " + text
    return text


def _describe_calibration(row: Whitening) -> str:
    calibration = Calibration.from_dict(row.calibration)
    if calibration is None:
        return _("Default calibration (measured on the grocery photos): this catalogue gave no search with a known answer.")
    if calibration.basis == "chance":
        return ngettext(
            "Not calibrated: %(searches)d search with a known answer, %(needed)d needed "
            "(a product's second image makes them). Every result gets about the same probability and searches "
            "say 'no confident match', unless the photo is a copy of one of your images. Add photos like a customer's (on a shelf, in a hand) to your products: "
            "with three or more images of each, scores measured honest on the grocery photos this package is tested "
            "with. The next whitening fit (the sweep, or `manage.py visual_search_reindex --only missing`) calibrates.",
            "Not calibrated: %(searches)d searches with a known answer, %(needed)d needed "
            "(a product's second image makes them). Every result gets about the same probability and searches "
            "say 'no confident match', unless the photo is a copy of one of your images. Add photos like a customer's (on a shelf, in a hand) to your products: "
            "with three or more images of each, scores measured honest on the grocery photos this package is tested "
            "with. The next whitening fit (the sweep, or `manage.py visual_search_reindex --only missing`) calibrates.",
            calibration.fitted_on,
        ) % {"searches": calibration.fitted_on, "needed": CALIBRATION_MIN_SEARCHES}
    # Mixed with the default curve, the fit's own error on its searches describes no score a customer sees.
    if calibration.error is not None and not calibration.prior:
        text = _("Calibrated on %(searches)d searches with a known answer, calibration error %(error).3f on them.") % {
            "searches": calibration.fitted_on, "error": calibration.error}
    else:
        text = _("Calibrated on %(searches)d searches with a known answer.") % {"searches": calibration.fitted_on}
    images = calibration.images_per_product
    if calibration.prior > 0:
        text += " " + ngettext(
            "Your products have about %(images)g image each: too few for your own searches alone to calibrate "
            "the scores (they would understate how often the first result is right), so %(share)d %% of each score "
            "comes from the curve measured on the grocery photos this package is tested with. Add photos like a "
            "customer's (on a shelf, in a hand): the more images a product has, the more the scores are your catalogue's own.",
            "Your products have about %(images)g images each: too few for your own searches alone to calibrate "
            "the scores (they would understate how often the first result is right), so %(share)d %% of each score "
            "comes from the curve measured on the grocery photos this package is tested with. Add photos like a "
            "customer's (on a shelf, in a hand): the more images a product has, the more the scores are your catalogue's own.",
            _plural_count(images),
        ) % {"images": images, "share": round(100 * calibration.prior)}
    elif images is not None and images < FEW_IMAGES:  # fitted before the default curve was mixed in
        text += " " + ngettext(
            "Your products have about %(images)g image each: the scores understate how often the first result is "
            "right, so searches say 'no confident match' more often than they should. Add photos like a customer's "
            "(on a shelf, in a hand): from about three photos besides the catalogue image, the scores measured honest.",
            "Your products have about %(images)g images each: the scores understate how often the first result is "
            "right, so searches say 'no confident match' more often than they should. Add photos like a customer's "
            "(on a shelf, in a hand): from about three photos besides the catalogue image, the scores measured honest.",
            _plural_count(images),
        ) % {"images": images}
    return text


def _plural_count(images: float) -> int:
    """The whole number that picks the plural form for ``images`` per product, a median (1, 1.5, 2):
    "1 image", "1.5 images" in English; gettext's plural rules take whole numbers only."""
    return math.ceil(images)


class _Twins:
    """The gallery rows a calibration search hides: the image the query was made from, if any, and
    the ``CALIBRATION_HIDE_NEAREST`` share of its product's other images most like the query
    (compared unwhitened, as stored)."""

    def __init__(self, gallery: Sample):
        self.vectors = l2_normalise(gallery.vectors)
        self.rows_of: dict[str, np.ndarray] = {}
        for n, result_id in enumerate(gallery.result_ids):
            self.rows_of.setdefault(result_id, []).append(n)
        self.rows_of = {r: np.asarray(rows) for r, rows in self.rows_of.items()}

    def nearest(self, query: np.ndarray, answer: str, hide: int | None) -> list[int]:
        hidden = [] if hide is None else [hide]
        rows = self.rows_of.get(answer, np.empty(0, dtype=int))
        rows = rows[rows != hide] if hide is not None else rows
        count = round(CALIBRATION_HIDE_NEAREST * len(rows))
        if count and len(rows) > 1:
            similarities = self.vectors[rows] @ l2_normalise(np.asarray(query, dtype=np.float32))
            hidden += [int(n) for n in rows[np.argsort(-similarities, kind="stable")[:count]]]
        return hidden


def _held_out(sample: Sample, rng: random.Random) -> set:
    """Images set aside to calibrate on: up to ``CALIBRATION_QUERIES``, of products with more than
    one image, each product keeping at least one (one in five of its images at most, at least one).

    A product's least typical images are chosen (the farthest from the mean of its others): a
    customer's photo is taken elsewhere, where a shop's photos of one product are often a series.
    """
    by_result: dict[str, list[int]] = {}
    for n, result_id in enumerate(sample.result_ids):
        by_result.setdefault(result_id, []).append(n)
    candidates = []
    for rows in by_result.values():
        if len(rows) > 1:
            vectors = l2_normalise(sample.vectors[rows])
            others = (vectors.sum(axis=0)[None, :] - vectors) / (len(rows) - 1)
            typical = np.einsum("nd,nd->n", vectors, l2_normalise(others))
            order = np.argsort(typical)
            picked = order[: max(1, len(rows) // 5)] if len(candidates) % 2 == 0 else rng.sample(list(order), max(1, len(rows) // 5))
            candidates += [sample.sources[rows[n]] for n in picked]
    return set(rng.sample(candidates, min(len(candidates), CALIBRATION_QUERIES)))


# Stored by a fit that had no search to calibrate on (searches use the default curve): unlike the
# empty calibration of a whitening 0.1 learned, which needs_refit fits again.
NOTHING_TO_CALIBRATE = {"basis": "default"}

# A covariance of 512 dimensions is estimated well from this many vectors; more only costs time.
SAMPLE = 100_000


def _sample_vectors(rows, ids: np.ndarray) -> Sample:
    if len(ids) > SAMPLE:
        ids = np.sort(np.random.default_rng(0).choice(ids, SAMPLE, replace=False))
    found = []
    for start in range(0, len(ids), 5000):
        chunk = [int(i) for i in ids[start : start + 5000]]
        found += rows.filter(id__in=chunk).values_list("id", "result_id", "vector")
    return Sample(
        np.stack([np.frombuffer(bytes(blob), dtype=np.float32) for _, _, blob in found]),
        [r for _, r, _ in found],
        [pk for pk, _, _ in found],
    )


def needs_refit(result_type_id: int, fingerprint: str, ready: int) -> bool:
    """True when there is no whitening yet, the catalogue grew (or shrank) by ``WHITENING_REFIT_GROWTH``, or its
    calibration was fitted for another ranking (``QUERY_EXPANSION``, ``PROTOTYPE_WEIGHT``), before
    it recorded its ``basis`` (0.2.0's, which may have learned from customer views of a product's
    only image: see ``CALIBRATION_MIN_SEARCHES``) or not at all (0.1's)."""
    small = ready < int(settings.WHITENING_MIN_VECTORS)
    if not settings.WHITENING or ready < 2 or (small and not int(settings.WHITENING_AUGMENT)):
        return False
    row = Whitening.objects.db_manager(router.db_for_write(Whitening)).filter(result_type_id=result_type_id, fingerprint=fingerprint)
    row = row.only("trained_on", "calibration").first()  # the primary's: one just fitted is not due again
    growth = 1 + float(settings.WHITENING_REFIT_GROWTH)
    if row is None or ready >= row.trained_on * growth or ready * growth <= row.trained_on:
        # Shrunk as much: it learned from (and its calibration counted) products that are gone.
        return True
    if "basis" not in (row.calibration or {}):
        # 0.1 learned no calibration (migration 0007 gave its rows {}), and a PCA whitening where
        # WHITENING is now 'learned'; 0.2.0's recorded no basis. A shop that kept 0.1's vectors
        # ("VIEWS": ["full"], or a trained version active) has nothing stale: without this,
        # neither was ever learned again.
        return True
    if row.calibration.get("basis") == "searches" and "prior" not in row.calibration and prior_weight(row.calibration.get("images_per_product")) > 0:
        return True  # few images per product, fitted before the default curve was mixed in
    # Scores ranked another way (QUERY_EXPANSION, PROTOTYPE_WEIGHT changed) need their own calibration.
    calibration = Calibration.from_dict(row.calibration)
    return calibration is not None and not calibration.fits(Policy.from_settings())


def _due(fingerprint: str | None) -> Iterator[type]:
    """Each searchable model whose whitening is due (see ``needs_refit``) for ``fingerprint``
    (default: the current one): a count and a row per model."""
    if not settings.WHITENING:
        return
    fingerprint = fingerprint or current_fingerprint()
    for model in {r.result_model for r in get_registrations()}:
        result_type = ContentType.objects.get_for_model(model)
        ready = ImageEmbedding.objects.on_primary().ready(fingerprint).filter(result_type=result_type).count()
        if needs_refit(result_type.pk, fingerprint, ready):
            yield model


def outgrown(fingerprint: str | None = None) -> bool:
    """Whether some searchable model's catalogue has outgrown its whitening (of ``fingerprint``,
    default: the current one): searches compare by plain cosine and state no confident match until
    it is learned again (:func:`visual_search.backends.rows.outgrown`), so a fit should not wait."""
    fingerprint = fingerprint or current_fingerprint()
    rows = Whitening.objects.filter(fingerprint=fingerprint).only("result_type_id", "fingerprint", "trained_on")
    return any(row_outgrown(row) for row in rows)


def row_outgrown(row: Whitening) -> bool:
    """Whether the catalogue of this whitening's model and fingerprint has outgrown it
    (:func:`visual_search.backends.rows.outgrown`); counts the ready rows (one query) only for a
    whitening learned from fewer than ``WHITENING_MIN_VECTORS`` vectors."""
    if not settings.WHITENING or row.result_type_id is None or not 0 < (row.trained_on or 0) < int(settings.WHITENING_MIN_VECTORS):
        return False  # an unsaved row (a note previewed) has no catalogue to count
    ready = ImageEmbedding.objects.ready(row.fingerprint).filter(result_type_id=row.result_type_id).count()
    return index_rows.outgrown(row.trained_on, ready)



def most_images_refitted() -> int:
    """How many images a fit sees at most, each a customer's photo as ``QUERY_VIEWS`` sees it: a
    small catalogue's augmented views or a large one's calibration views (what its time goes on)."""
    return max(AUGMENTED_IMAGES * int(settings.WHITENING_AUGMENT), CALIBRATION_IMAGES * CALIBRATION_VIEWS)


def fit_due(fingerprint: str | None = None) -> bool:
    """Whether :func:`fit_if_needed` would fit anything."""
    return next(_due(fingerprint), None) is not None


def fit_if_needed(fingerprint: str | None = None, progress: FitProgress | None = None) -> list:
    """Fit the whitening of every searchable model that has none yet or has grown or shrunk (see ``needs_refit``).

    For the current fingerprint, or for ``fingerprint`` (a model version about to be activated).
    ``progress`` as :func:`fit`'s.
    """
    if not settings.WHITENING:
        return []
    fingerprint = fingerprint or current_fingerprint()
    return [saved for model in list(_due(fingerprint)) for saved in fit(model, fingerprint, progress)]
