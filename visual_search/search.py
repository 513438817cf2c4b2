"""The Python API: find objects similar to a photo, or to an object already indexed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.views.decorators.debug import sensitive_variables
from PIL import Image

from . import serving
from .backends import get_backend
from .capacity import search_slot
from .conf import settings
from .embeddings.images import Box, check_not_blank
from .embeddings.pooling import l2_normalise
from .exceptions import VisualSearchError
from .models import ImageEmbedding
from .ranking import DEFAULT_CALIBRATION, Policy
from .registry import NotShown, get_registrations, registrations_for_model, registrations_for_result, visible
from .serving import current_fingerprint
from .tenants import in_public_schema

logger = logging.getLogger("visual_search")


class NotIndexed(VisualSearchError):
    """The object has no ready embedding yet (pending, failed, or never indexed).

    ``state`` says which: ``"pending"`` (queued, or made by another version of the network and
    being recomputed: it will be searchable soon), ``"failed"`` (its images could not be read:
    nothing changes until an image is replaced) or ``"missing"`` (no image to compare).
    ``stale``: "pending" only because its vectors were made by another version, which the sweep
    recomputes where Celery runs it (without Celery, only ``visual_search_reindex`` does).
    """

    def __init__(self, message: str, state: str = "missing", stale: bool = False):
        super().__init__(message)
        self.state = state
        self.stale = stale


class NotSearchable(VisualSearchError, LookupError):
    """No registration returns objects of this model."""


@dataclass(frozen=True)
class SearchResult:
    """One match: the object and its ``score``.

    ``probability``: how likely the object is the product in the photo, calibrated on the shop's
    own images (:mod:`visual_search.ranking`); ``similarity``: the ranking's similarity (cosine in
    the whitened space, 1.0 = identical). ``score`` is one of them, as ``VISUAL_SEARCH["SCORE"]`` says.
    """

    object: Any
    score: float
    similarity: float | None = None
    probability: float | None = None


def _queryset(model_or_queryset, request=None) -> models.QuerySet:
    """The queryset to search; with a ``request``, only what that customer may see (``VISIBILITY``)."""
    if isinstance(model_or_queryset, models.QuerySet):
        queryset = model_or_queryset
    else:
        queryset = model_or_queryset._default_manager.all()
    if not registrations_for_result(queryset.model):
        # A gallery model registered with result="product" finds products: say which to search.
        results = sorted({r.result_model.__name__ for r in registrations_for_model(queryset.model)})
        if results:
            raise NotSearchable(
                f"{queryset.model.__name__} is registered so that its images find {' and '.join(results)} objects "
                f"(its result): search {results[0]} instead, e.g. visual_search.search_by_image(data, {results[0]})."
            )
        raise NotSearchable(
            f"{queryset.model.__name__} is not searchable: register it (or an image model whose "
            "result it is) in VISUAL_SEARCH['MODELS'] or with visual_search.register()."
        )
    if request is not None:
        queryset = queryset.filter(pk__in=visible(queryset.model, request).values("pk"))
    return queryset


def search_vector(
    vector: np.ndarray, model_or_queryset, *, limit: int = 10, exclude: tuple = (), fingerprint: str | None = None
) -> list[SearchResult]:
    """Objects most similar to a unit ``vector``, best first.

    ``vector`` must come from the model of ``fingerprint`` (default: the current one). Callers that
    made the vector pass the fingerprint they made it with, so a switch to another model version
    between embedding and searching never compares vectors of two versions.
    """
    queryset = _queryset(model_or_queryset)
    restrict = None
    if queryset.query.has_filters() or queryset.query.is_sliced:
        restrict = {str(pk) for pk in queryset.values_list("pk", flat=True)}
    result_type_id = ContentType.objects.get_for_model(queryset.model).pk
    fingerprint = fingerprint or current_fingerprint()
    hits = get_backend().search(
        np.asarray(vector, dtype=np.float32),
        result_type_id=result_type_id,
        fingerprint=fingerprint,
        limit=limit,
        restrict_to=restrict,
        exclude={str(pk) for pk in exclude},
        policy=_policy(result_type_id, fingerprint),
    )
    by_probability = settings.SCORE == "probability"
    found = queryset.model._default_manager.in_bulk([_to_pk(queryset.model, h.result_id) for h in hits])
    results = []
    for hit in hits:
        obj = found.get(_to_pk(queryset.model, hit.result_id))
        if obj is not None:  # deleted since it was indexed
            similarity, probability = round(hit.score, 6), round(hit.probability or 0.0, 6)
            results.append(SearchResult(obj, probability if by_probability else similarity, similarity, probability))
    return results


def _policy(result_type_id: int, fingerprint: str) -> Policy:
    """The settings' ranking with the shop's calibration, or the default one until the shop has one
    fitted for this ranking (the next whitening fit, by the sweep or ``visual_search_reindex``)."""
    policy = Policy.from_settings()
    calibration = serving.calibration(result_type_id, fingerprint)
    if calibration is not None and not calibration.fits(policy):
        _warn_once(
            f"The score calibration of {fingerprint[:8]} was fitted for ranking {calibration.scoring!r}, not "
            f"{policy.scoring!r}: the default calibration is used until it is refitted (by the sweep, or now "
            "with `manage.py visual_search_reindex --only missing`)."
        )
        calibration = None
    return replace(policy, calibration=calibration or DEFAULT_CALIBRATION)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def is_confident(results: list[SearchResult]) -> bool:
    """Whether the first result is likely enough the product in the photo (``CONFIDENT_SCORE``)."""
    return bool(results) and (results[0].probability or 0.0) >= float(settings.CONFIDENT_SCORE)


@sensitive_variables("image", "picture", "vector")  # the customer's photo, out of error reports
def search_by_image(
    image: bytes | IO[bytes], model_or_queryset, *, limit: int = 10, request=None, box: str | Sequence[float] | Box | None = None
) -> list[SearchResult]:
    """Objects that look most like ``image`` (bytes or a file, e.g. an upload), best first.

    ``model_or_queryset`` is the model to return (``Product``) or a queryset restricting it
    (``Product.objects.filter(in_stock=True)``). Raises :class:`~visual_search.exceptions.InvalidImage`
    with a message for the customer when the image cannot be used. Given the customer's
    ``request``, only what the shop's ``VISIBILITY`` rule shows them is returned. ``box`` searches
    only a region of the photo: ``"x0,y0,x1,y1"`` or four numbers, fractions of its width and
    height after EXIF rotation (:class:`~visual_search.exceptions.InvalidBox` when it is not one).
    Raises :class:`~visual_search.exceptions.TooManySearches` when this process already runs
    ``MAX_CONCURRENT_SEARCHES`` searches and none finished within a few seconds.
    """
    region = Box.parse(box)
    queryset = _queryset(model_or_queryset, request)
    # The decoded photo and the network's pass are a search's memory and CPU: at most
    # MAX_CONCURRENT_SEARCHES at once per process (TooManySearches beyond, after a short wait, which
    # a cold process's loading of the network does not use up).
    with search_slot(loading=serving.loading):
        # Decoded first: a broken or hostile upload is refused before any model is loaded.
        picture = serving.decode_upload(image, region)
        check_not_blank(picture, region)  # a lens cap's photo "matched" every product at 44 %
        extractor = serving.get_extractor()
        vector = extractor.embed_picture(picture, settings.QUERY_VIEWS, region)
        del picture  # not held while the index is searched
    return search_vector(vector, queryset, limit=limit, fingerprint=extractor.fingerprint)


def object_vector(obj: models.Model, fingerprint: str | None = None) -> np.ndarray:
    """The mean of ``obj``'s ready vectors (its own images and its gallery's), L2-normalised."""
    rows = ImageEmbedding.objects.for_result(obj).ready(fingerprint or current_fingerprint()).values_list("vector", flat=True)
    vectors = [np.frombuffer(bytes(blob), dtype=np.float32) for blob in rows]
    if not vectors:
        state, stale = _unindexed_state(obj)
        raise NotIndexed(
            f"{obj._meta.verbose_name} {obj.pk} has no ready image embedding yet ({state}); "
            "run manage.py visual_search_status to see why.",
            state,
            stale,
        )
    return l2_normalise(np.mean(vectors, axis=0))


def being_indexed(model: type[models.Model]) -> bool:
    """Whether ``model`` has no vector to search yet while some are on their way: none ready for
    the current model, and images pending or made by another one (an upgrade that changed the
    fingerprint, recomputing at its start; a catalogue being indexed for the first time)."""
    rows = ImageEmbedding.objects.filter(result_type=ContentType.objects.get_for_model(model))
    fingerprint = current_fingerprint()
    if rows.filter(fingerprint=fingerprint, status=ImageEmbedding.Status.READY).exists():
        return False
    return rows.filter(models.Q(status=ImageEmbedding.Status.PENDING) | ~models.Q(fingerprint=fingerprint)).exists()


def _unindexed_state(obj: models.Model) -> tuple[str, bool]:
    """Why ``obj`` has no ready vector: ``"pending"``, ``"failed"`` or ``"missing"``, and whether
    "pending" means only vectors of another version (see :class:`NotIndexed`)."""
    statuses = set(ImageEmbedding.objects.for_result(obj).values_list("status", flat=True))
    if ImageEmbedding.Status.PENDING in statuses:
        return "pending", False
    if ImageEmbedding.Status.READY in statuses:  # another version's: the sweep recomputes it
        return "pending", True
    if ImageEmbedding.Status.FAILED in statuses:
        return "failed", False
    return "missing", False


def find_similar(obj: models.Model, *, limit: int = 10, queryset: models.QuerySet | None = None, request=None) -> list[SearchResult]:
    """Objects most similar to ``obj``, itself excluded, best first; raises :class:`NotIndexed`.

    Given the customer's ``request``, only what the shop's ``VISIBILITY`` rule shows them. An object
    shown on another's page (an Oscar variant, on its parent's) gets that page's look-alikes, that
    page excluded, found from its own images when it has ready ones. Given a ``request``, one that
    customer is not shown (a hidden product, a hidden variant, a variant of a hidden parent:
    :func:`check_shown`) raises :class:`~visual_search.registry.NotShown` (a ``LookupError``), which
    the similar endpoint answers 404 for and ``{% similar_products %}`` shows nothing for. Without a
    request (shop code, no customer) nothing is hidden: a hidden variant gets its parent's look-alikes.
    """
    target = _queryset(queryset if queryset is not None else type(obj), request)
    fingerprint = current_fingerprint()
    if request is not None:  # an object hidden from this customer, or on a page hidden from them: the API's 404
        check_shown(obj, visible(type(obj), request))
    page = page_of(obj)
    if page is None:
        return search_vector(object_vector(obj, fingerprint), target, limit=limit, exclude=(obj.pk,), fingerprint=fingerprint)
    try:
        vector = _vector(_own_rows(obj), fingerprint)
    except NotIndexed:
        vector = object_vector(page, fingerprint)
    return search_vector(vector, target, limit=limit, exclude=(obj.pk, page.pk), fingerprint=fingerprint)


def page_of(obj: models.Model) -> models.Model | None:
    """The object whose page shows ``obj`` (:meth:`~visual_search.registry.Registration.shown_on`:
    an Oscar variant's parent, hidden or not), or None where it is shown as itself."""
    for registration in registrations_for_result(type(obj)):
        page = registration.shown_on(obj)
        if page is not None:
            return page
    return None


def shown_on(obj: models.Model, shown: models.QuerySet) -> models.Model:
    """The object of ``shown`` whose page shows ``obj``, one ``shown`` does not list itself; raises
    :class:`~visual_search.registry.NotShown` saying why there is none (empty: just not shown), or
    why customers see ``obj`` on no page (:meth:`~visual_search.registry.Registration.why_hidden`:
    a hidden Oscar variant)."""
    page = page_of(obj)
    if page is None:
        raise NotShown()
    for registration in registrations_for_result(type(obj)):
        if reason := registration.why_hidden(obj):
            raise NotShown(reason)
    _check_page_shown(obj, page, shown)
    return page


def check_shown(obj: models.Model, shown: models.QuerySet) -> None:
    """Raise :class:`~visual_search.registry.NotShown` saying why when a customer shown ``shown``
    (``visible(model, request)``) does not see ``obj``: ``shown`` lists neither it nor the page that
    shows it (a hidden product, a hidden Oscar variant or one of a hidden parent). The similar endpoint answers 404
    for such an object; a rule that shows staff everything lets them preview its look-alikes."""
    if shown.filter(pk=obj.pk).exists():
        return
    try:
        shown_on(obj, shown)
    except NotShown as exc:
        if exc.reason:
            raise
        raise NotShown(f"the shop's VISIBILITY rule does not show {obj._meta.model_name} {obj.pk} to this customer.") from None


def _check_page_shown(obj: models.Model, page: models.Model, shown: models.QuerySet) -> None:
    """:class:`~visual_search.registry.NotShown` saying why when ``shown`` does not list ``page``, ``obj``'s page."""
    if not shown.filter(pk=page.pk).exists():
        raise NotShown(f"it is shown on the page of {obj._meta.model_name} {page.pk}, which customers are not shown.")


def _own_rows(obj: models.Model) -> models.QuerySet:
    """The rows of ``obj``'s own images, whatever result they stand for (a variant's, its parent)."""
    own = models.Q(pk__in=[])
    for registration in registrations_for_result(type(obj)):
        ids = [str(pk) for pk in registration.of_results([obj.pk]).values_list("pk", flat=True)]
        kind = ContentType.objects.get_for_model(registration.model)
        own |= models.Q(content_type=kind, field_name=registration.image_field, object_id__in=ids)
    return ImageEmbedding.objects.filter(own)


def _vector(rows: models.QuerySet, fingerprint: str) -> np.ndarray:
    """The mean of ``rows``' ready vectors, L2-normalised; :class:`NotIndexed` when there is none."""
    vectors = [np.frombuffer(bytes(blob), dtype=np.float32) for blob in rows.ready(fingerprint).values_list("vector", flat=True)]
    if not vectors:
        raise NotIndexed("no ready image embedding")
    return l2_normalise(np.mean(vectors, axis=0))


def _to_pk(model: type[models.Model], value: str) -> Any:
    return model._meta.pk.to_python(value)


def warm_up() -> dict[str, float]:
    """Load now what the first photo search of a process would: the network (and run it once, so
    its graph is built) and each searchable model's index. Call it where a web process starts,
    before it takes requests (gunicorn's ``post_worker_init``: ``deploy/gunicorn.conf.py``), so that
    no customer waits for it. Never raises: a part that cannot load now (the database not migrated
    yet, the weights missing) is logged, and the first search loads it as it would have.

    Returns the seconds each part took: ``{"network": ..., "index": ...}`` (a part that failed is
    left out).
    """
    took: dict[str, float] = {}
    started = time.perf_counter()
    try:
        extractor = serving.get_extractor()
        vector = extractor.embed_picture(Image.new("RGB", (64, 64), (128, 128, 128)), settings.QUERY_VIEWS, None)
        took["network"] = round(time.perf_counter() - started, 3)
    except Exception:
        logger.warning("Visual search warm-up: the network could not be loaded now; the first search will load it", exc_info=True)
        return took
    if in_public_schema():  # a django-tenants platform: each shop's vectors load at its first search
        logger.info("Visual search warmed up: network %.1f s", took["network"])
        return took
    started = time.perf_counter()
    try:
        for model in {registration.result_model for registration in get_registrations()}:
            search_vector(vector, model, limit=1, fingerprint=extractor.fingerprint)
        took["index"] = round(time.perf_counter() - started, 3)
    except Exception:
        logger.warning("Visual search warm-up: the index could not be loaded now; the first search will load it", exc_info=True)
    logger.info("Visual search warmed up: %s", ", ".join(f"{part} {seconds:.1f} s" for part, seconds in took.items()))
    return took
