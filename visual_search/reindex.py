"""Bulk (re)indexing: choose which objects need work, then do it in-process or through Celery."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from .batching import chunked
from .conf import settings
from .indexing import IndexReport, index_objects
from .models import ImageEmbedding
from .queue import enqueue, use_celery
from .registry import Registration, get_registrations
from .serving import current_fingerprint, indexing_fingerprints
from .whitening import fit_due, fit_if_needed

SELECTIONS = ("missing", "stale", "failed", "pending")


def select_pks(registration: Registration, only: Iterable[str] | None = None, queryset: models.QuerySet | None = None) -> list[Any]:
    """Primary keys of ``registration.model`` objects to index.

    ``only`` narrows to objects whose image has no row at all (``missing``), rows of other models
    but none of the current one, or a current one made from another file (``stale``: the settings
    changed, or the image did and its row was never marked), a failed attempt (``failed``) or
    an unfinished one (``pending``) of the current or a building version; None means all. A
    retired version's rows beside current ones are not stale: they wait for a rollback. Objects
    without an image are left out.
    """
    objects = queryset if queryset is not None else registration.model._default_manager.all()
    objects = objects.exclude(**{registration.image_field: ""}).exclude(**{f"{registration.image_field}__isnull": True})
    if not only:
        return list(objects.order_by("pk").values_list("pk", flat=True))
    unknown = set(only) - set(SELECTIONS)
    if unknown:
        raise ValueError(f"Unknown selection {sorted(unknown)}: choose from {', '.join(SELECTIONS)}.")
    rows = ImageEmbedding.objects.filter(
        content_type=ContentType.objects.get_for_model(registration.model), field_name=registration.image_field
    )
    wanted: set[str] = set()
    fingerprint = current_fingerprint()
    have_current, have_any = _object_ids(rows, fingerprint)
    if "stale" in only:
        wanted |= (have_any - have_current) | _renamed(registration, rows, fingerprint)
    for status in ("failed", "pending"):
        if status in only:
            wanted |= set(rows.filter(status=status, fingerprint__in=indexing_fingerprints()).values_list("object_id", flat=True))
    all_pks = list(objects.order_by("pk").values_list("pk", flat=True))
    if "missing" in only:
        wanted |= {str(pk) for pk in all_pks if str(pk) not in have_any}
    return [pk for pk in all_pks if str(pk) in wanted]


def _renamed(registration: Registration, rows: models.QuerySet, fingerprint: str) -> set[str]:
    """Object ids whose image is no longer the one their current row was made from: the save that
    changed it committed, but marking the row pending did not (the database went away between the
    two, under autocommit). Nothing else would ever recompute such a row."""
    done = rows.filter(fingerprint=fingerprint).exclude(status=ImageEmbedding.Status.PENDING).exclude(source_name="")
    made_from = dict(done.values_list("object_id", "source_name"))  # a pending row is already on its way
    if not made_from:
        return set()
    now = registration.model._default_manager.values_list("pk", registration.image_field)
    return {str(pk) for pk, name in now if str(pk) in made_from and name and made_from[str(pk)] != name}


def _object_ids(rows: models.QuerySet, fingerprint: str) -> tuple[set[str], set[str]]:
    """Object ids with a row of ``fingerprint``, and with a row of any fingerprint."""
    return (
        set(rows.filter(fingerprint=fingerprint).values_list("object_id", flat=True)),
        set(rows.values_list("object_id", flat=True).distinct()),
    )


def reindex(
    model: type[models.Model] | None = None,
    *,
    only: Iterable[str] | None = None,
    queryset: models.QuerySet | None = None,
    asynchronous: bool | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    before_fit: Callable[[], None] | None = None,
) -> dict[str, int]:
    """(Re)index registered objects; returns counts by outcome (or ``queued`` when asynchronous).

    ``model`` (or ``queryset``) limits the work to one model; ``only`` to some objects (see
    :func:`select_pks`). ``asynchronous=True`` queues Celery tasks of ``BATCH_SIZE`` ids; False
    runs in this process in batches, calling ``progress(n)`` after each; None follows ``ASYNC``.
    In this process, the whitening and calibration fits that are due follow, ``before_fit()``
    called first (they take a minute or two: a command says so).
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
    counts: dict[str, int] = {}
    report = IndexReport()
    for registration in registrations:
        pks = select_pks(registration, only, queryset if queryset is not None and queryset.model is registration.model else None)
        if asynchronous:
            counts["queued"] = counts.get("queued", 0) + enqueue(registration.label, registration.image_field, pks, force)
            continue
        for batch in chunked(pks, int(settings.BATCH_SIZE) * 4):
            report.merge(index_objects(registration, batch, force=force))
            if progress:
                progress(len(batch))
    if not asynchronous:
        counts.update(report.as_dict())
        if before_fit and fit_due():
            before_fit()
        counts["whitened"] = len(fit_if_needed())
    return counts


def count_pks(model: type[models.Model] | None = None, only: Iterable[str] | None = None) -> int:
    return sum(len(select_pks(r, only)) for r in registrations_named(model))


def registrations_named(model: type[models.Model] | None) -> list[Registration]:
    """The registrations ``reindex(model)`` works on: every one for None; the model's own; for a
    result model that is not registered itself (a ``Product`` whose photos are a registered
    ``ProductImage`` gallery), the registrations whose matches stand for it."""
    registrations = get_registrations()
    if model is None:
        return registrations
    return [r for r in registrations if r.model is model] or [r for r in registrations if r.result_model is model]


def status_counts() -> list[dict[str, Any]]:
    """Per registration: objects with an image; their rows of the current fingerprint ready,
    pending or failed; images with only other models' rows, or a current one made from another file
    (``stale``), or none (``missing``);
    and rows of other versions kept beside the current ones (``other_versions``)."""
    fingerprint = current_fingerprint()
    table = []
    for registration in get_registrations():
        rows = ImageEmbedding.objects.filter(
            content_type=ContentType.objects.get_for_model(registration.model), field_name=registration.image_field
        )
        with_image = {str(pk) for pk in registration.model._default_manager.exclude(**{registration.image_field: ""}).values_list("pk", flat=True)}
        current = rows.filter(fingerprint=fingerprint)
        by_status = dict(current.values_list("status").annotate(n=models.Count("id")).values_list("status", "n"))
        have_current, have_any = _object_ids(rows, fingerprint)
        stale = (have_any - have_current) | _renamed(registration, rows, fingerprint)
        table.append(
            {
                "model": f"{registration.label}.{registration.image_field}",
                "objects": len(with_image),
                "ready": by_status.get("ready", 0),
                "pending": by_status.get("pending", 0),
                "failed": by_status.get("failed", 0),
                "stale": len(with_image & stale),
                "missing": len(with_image - have_any),
                "other_versions": rows.exclude(fingerprint=fingerprint).count(),
            }
        )
    return table
