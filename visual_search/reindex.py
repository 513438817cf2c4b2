"""Bulk (re)indexing: choose which objects need work, then do it in-process or through Celery."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, router, transaction

from .batching import chunked
from .conf import settings
from .indexing import IndexReport, index_objects, remove_from_backend, remove_object, reset_attempts
from .models import ImageEmbedding, pk_as_text, pk_from_text
from .queue import enqueue, use_celery
from .registry import Registration, get_registrations
from .serving import current_fingerprint, indexing_fingerprints
from .vector_files import VectorFile
from .whitening import FitProgress, fit_due, fit_if_needed

SELECTIONS = ("missing", "stale", "failed", "pending")


def select_pks(registration: Registration, only: Iterable[str] | None = None, queryset: models.QuerySet | None = None) -> list[Any]:
    """Primary keys of ``registration.model`` objects to index.

    ``only`` narrows to objects whose image has no row at all (``missing``), rows of other models
    but none of the current one, or a current one made from another file (``stale``: the settings
    changed, or the image did and its row was never marked), a failed attempt (``failed``) or
    an unfinished one (``pending``) of the current or a building version; None means all. A
    retired version's rows beside current ones are not stale: they wait for a rollback. Objects
    without an image, or out of search (``registration.searchable()``), are left out. Chosen by the
    database: only the selected keys are read.
    """
    objects = _with_image(registration, _searchable(registration, queryset))
    if only:
        unknown = set(only) - set(SELECTIONS)
        if unknown:
            raise ValueError(f"Unknown selection {sorted(unknown)}: choose from {', '.join(SELECTIONS)}.")
        conditions = _conditions(registration, current_fingerprint())
        wanted = models.Q()
        for selection in SELECTIONS:
            if selection in only:
                wanted |= conditions[selection]
        objects = objects.filter(wanted)
    return list(objects.order_by("pk").values_list("pk", flat=True))


def _searchable(registration: Registration, queryset: models.QuerySet | None = None) -> models.QuerySet:
    """``queryset`` (default: all of the model), less the objects out of search."""
    searchable = registration.searchable()
    if queryset is None:
        return searchable
    if not searchable.query.has_filters():  # every object takes part: the queryset as it was
        return queryset
    return queryset.filter(pk__in=searchable.values("pk"))


def out_of_search(registration: Registration) -> list[Any]:
    """Primary keys of objects with rows that take no part in search (not in
    ``registration.searchable()``: a variant hidden by a ``QuerySet.update``, which sends no signal).
    The sweep and :func:`reindex` delete their rows; none where every object takes part."""
    searchable = registration.searchable()
    if not searchable.query.has_filters():
        return []
    rows = ImageEmbedding.objects.of_field(registration.model, registration.image_field).filter(object_id=pk_as_text(registration.model))
    # From the primary, as orphaned() and hold_renamed(): a read replica that lags may still show
    # hidden an object shown again since, and its rows would go.
    hidden = registration.model._default_manager.db_manager(router.db_for_write(registration.model))
    hidden = hidden.exclude(pk__in=searchable.values("pk")).filter(models.Exists(rows))
    return list(hidden.order_by("pk").values_list("pk", flat=True))


def orphaned(registration: Registration) -> list[str]:
    """Object ids of rows whose object does not exist: the index restored without its products, or
    into a database where they have other keys, a delete in SQL (no signal). Nothing would ever
    remove them: the sweep and :func:`reindex` delete them."""
    model = registration.model
    rows = ImageEmbedding.objects.on_primary().of_field(model, registration.image_field)
    exists = models.Exists(model._base_manager.filter(pk=pk_from_text(model)))
    return list(rows.exclude(exists).order_by("object_id").values_list("object_id", flat=True).distinct())


def hold_renamed(registration: Registration) -> list[int]:
    """Take out of search the ready rows of the current model made from another file than their
    object's image now (the index restored into a database where the products have other keys; a
    change whose marking was lost): pending, as a save makes them, so that no search answers with a
    product on another product's photo until it is computed again. Returns the rows' ids.

    Call it after choosing the stale objects (:func:`select_pks`): a pending row is no longer stale.
    """
    model, field = registration.model, registration.image_field
    shows_another = _with_image(registration, model._base_manager.filter(pk=pk_from_text(model))).exclude(
        **{field: models.OuterRef("source_name")}
    )
    rows = ImageEmbedding.objects.on_primary().of_field(model, field).filter(
        fingerprint=current_fingerprint(), status=ImageEmbedding.Status.READY
    ).exclude(source_name="").filter(models.Exists(shows_another))
    ids = list(rows.values_list("pk", flat=True))
    if ids:
        ImageEmbedding.objects.filter(pk__in=ids).update(status=ImageEmbedding.Status.PENDING)
        transaction.on_commit(lambda: remove_from_backend(ids), using=router.db_for_write(ImageEmbedding))
    return ids


def _with_image(registration: Registration, objects: models.QuerySet) -> models.QuerySet:
    field = registration.image_field
    return objects.exclude(**{field: ""}).exclude(**{f"{field}__isnull": True})


def _conditions(registration: Registration, fingerprint: str) -> dict[str, models.Q]:
    """Each selection as a condition on ``registration.model``'s objects (subqueries on their rows,
    each an index's prefix): the sets of object ids these were read into took 60 MB and two seconds
    of each ``visual_search_status`` and sweep at 100,000 products."""
    rows = ImageEmbedding.objects.of_field(registration.model, registration.image_field).filter(object_id=pk_as_text(registration.model))
    current = rows.filter(fingerprint=fingerprint)
    # A finished current row made from another file than the object's image now: the save that
    # changed it committed, but marking the row pending did not (the database went away between the
    # two, under autocommit). Nothing else would ever recompute such a row; a pending one is on its way.
    renamed = current.exclude(status=ImageEmbedding.Status.PENDING).exclude(source_name="").exclude(
        source_name=models.OuterRef(registration.image_field)
    )
    indexing = rows.filter(fingerprint__in=indexing_fingerprints())
    return {
        "missing": ~models.Exists(rows),
        "stale": (models.Exists(rows) & ~models.Exists(current)) | models.Exists(renamed),
        "failed": models.Exists(indexing.filter(status=ImageEmbedding.Status.FAILED)),
        "pending": models.Exists(indexing.filter(status=ImageEmbedding.Status.PENDING)),
    }


def reindex(
    model: type[models.Model] | None = None,
    *,
    only: Iterable[str] | None = None,
    queryset: models.QuerySet | None = None,
    asynchronous: bool | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    before_fit: Callable[[], None] | None = None,
    fit_progress: FitProgress | None = None,
    vectors: VectorFile | None = None,
) -> dict[str, int]:
    """(Re)index registered objects; returns counts by outcome (or ``queued`` when asynchronous).

    ``model`` (or ``queryset``) limits the work to one model; ``only`` to some objects (see
    :func:`select_pks`). ``asynchronous=True`` queues Celery tasks of ``BATCH_SIZE`` ids; False
    runs in this process in batches, calling ``progress(n)`` after each; None follows ``ASYNC``.
    Without a ``queryset``, the rows of objects out of search (:func:`out_of_search`) are deleted.
    In this process, the whitening and calibration fits that are due follow, ``before_fit()``
    called first (they send customer-like views of up to a few hundred images through the network
    again: a command says so), ``fit_progress(done, total)`` told of each image (see :func:`~visual_search.whitening.fit`).
    ``vectors``, in this process only: images whose bytes have a vector of this model version in
    that file take it instead of the network's pass (counted in ``taken``), and its whitenings
    where they were learned on them (``whitenings_taken``; see :mod:`~visual_search.vector_files`).
    """
    if queryset is not None:
        model = queryset.model
        registrations = [r for r in get_registrations() if r.model is model]
    else:
        registrations = registrations_named(model)
    if not registrations:
        raise ValueError(f"{model.__name__ if model else 'No model'} is not registered with visual search.")
    if asynchronous is None:
        asynchronous = use_celery()
    if asynchronous and vectors is not None:
        raise ValueError("A file of vectors is read in this process: reindex with it without Celery.")
    counts: dict[str, int] = {}
    report = IndexReport()
    taken: dict[int, int] = {}  # vectors taken from the file, by result content type id
    for registration in registrations:
        if queryset is None:  # the rows of objects out of search since their last save (an update()) go
            report.removed += [str(pk) for pk in out_of_search(registration) if remove_object(registration, pk)]
            report.removed += [pk for pk in orphaned(registration) if remove_object(registration, pk)]
        pks = select_pks(registration, only, queryset if queryset is not None and queryset.model is registration.model else None)
        reset_attempts(registration, pks)  # asked for by hand: images given up after MAX_EMBED_ATTEMPTS are tried again
        if asynchronous:
            counts["queued"] = counts.get("queued", 0) + enqueue(registration.label, registration.image_field, pks, force)
            continue
        known = vectors.vector if vectors is not None else None
        for batch in chunked(pks, int(settings.BATCH_SIZE) * 4):
            done = index_objects(registration, batch, force=force, known=known)
            report.merge(done)
            result_type = ContentType.objects.get_for_model(registration.result_model).pk
            taken[result_type] = taken.get(result_type, 0) + len(done.taken)
            if progress:
                progress(len(batch))
    if not asynchronous:
        counts.update(report.as_dict())
        if vectors is not None:
            counts["taken"] = len(report.taken)
            counts["whitenings_taken"] = vectors.take_whitenings(indexing_fingerprints(), taken)
        if before_fit and fit_due():
            before_fit()
        counts["whitened"] = len(fit_if_needed(progress=fit_progress))
    return counts


def count_pks(model: type[models.Model] | None = None, only: Iterable[str] | None = None) -> int:
    return sum(len(select_pks(r, only)) for r in registrations_named(model))


def registrations_named(model: type[models.Model] | None) -> list[Registration]:
    """The registrations ``reindex(model)`` works on: every one for None; else the model's own and
    those whose matches stand for it (a ``Product``'s ``ProductImage`` gallery), as the product
    admin's reindex action does. ``visual_search_reindex shop.Product`` beside a registered gallery
    did the product's main image only, and staff took the gallery for indexed."""
    registrations = get_registrations()
    if model is None:
        return registrations
    return [r for r in registrations if r.model is model or r.result_model is model]


def status_counts() -> list[dict[str, Any]]:
    """Per registration: objects with an image; their rows of the current fingerprint ready,
    pending or failed; images with only other models' rows, or a current one made from another file
    (``stale``), or none (``missing``);
    and rows of other versions kept beside the current ones (``other_versions``). Counted by the database."""
    fingerprint = current_fingerprint()
    table = []
    for registration in get_registrations():
        rows = ImageEmbedding.objects.of_field(registration.model, registration.image_field)
        with_image = _with_image(registration, registration.searchable())
        conditions = _conditions(registration, fingerprint)
        by_status = dict(rows.filter(fingerprint=fingerprint).values_list("status").annotate(n=models.Count("id")).values_list("status", "n"))
        table.append(
            {
                "model": f"{registration.label}.{registration.image_field}",
                "objects": with_image.count(),
                "ready": by_status.get("ready", 0),
                "pending": by_status.get("pending", 0),
                "failed": by_status.get("failed", 0),
                "stale": with_image.filter(conditions["stale"]).count(),
                "missing": with_image.filter(conditions["missing"]).count(),
                "other_versions": rows.exclude(fingerprint=fingerprint).count(),
            }
        )
    return table
