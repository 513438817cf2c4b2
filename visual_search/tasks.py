"""Celery tasks. Messages carry ids only (``"app.model"``, field name, primary keys), never objects.

Tasks are idempotent (they re-read the rows and skip unchanged images) and acknowledged late, so a
redelivered or re-run task does the same work once more at worst, and a worker killed mid-batch
loses nothing: its message goes back to the queue. A bad image is not an error of the task: it is
recorded on its row and the batch goes on. Errors that may pass (database or storage unreachable)
retry with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError
from django.utils import timezone

from . import queue
from .backends import get_backend
from .conf import settings
from .embeddings import images
from .exceptions import WeightsUnavailable
from .logs import counted
from .indexing import IndexReport, begin_attempt, end_attempt, hold_attempt, index_objects, remove_object
from .models import ImageEmbedding, ModelVersion
from .queue import enqueue, use_celery  # noqa: F401 - public here since the first release
from .registry import get_registration, get_registrations
from .reindex import hold_renamed, orphaned, out_of_search, select_pks
from .serving import indexing_fingerprints
from .tenants import in_public_schema
from .training.jobs import run_training, trained_elsewhere
from .versions import STALLED_AFTER_SECONDS, build_step, resume_stalled_builds
from .whitening import fit_due, fit_if_needed, outgrown

logger = logging.getLogger("visual_search")

# A soft time limit striking while an image is decoded is the task's, not the image's: not "damaged".
images.PASS_THROUGH = (*images.PASS_THROUGH, SoftTimeLimitExceeded)

TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError, OSError),
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


WEIGHTS_ERROR_EVERY = 300.0
_weights_error_logged: dict[str, float] = {}


def _log_weights_error(label: str, count: int, exc: Exception) -> None:
    now, message = time.monotonic(), str(exc)
    last = _weights_error_logged.get(message)
    level = logging.DEBUG if last is not None and now - last < WEIGHTS_ERROR_EVERY else logging.ERROR
    if level == logging.ERROR:
        _weights_error_logged[message] = now
    logger.log(level, "Visual search could not index %s %s: the rows stay pending. %s", label, counted(count, "id"), message)


class RetryLater(Exception):
    """Some images of a batch could not be read for a reason that may pass."""


@shared_task(bind=True, name=queue.EMBED_OBJECTS, **TASK_OPTIONS)
def embed_objects(self, label: str, image_field: str, pks: Sequence[Any], force: bool = False, fingerprint: str | None = None) -> dict:
    """Embed the images of objects ``pks`` of model ``label``, in batches. Returns counts.

    For every indexing fingerprint (the active model version and any being built), or only for
    ``fingerprint`` (a version being built: see :func:`visual_search.versions.activate`).
    """
    fingerprints = [fingerprint] if fingerprint else None
    registration = get_registration(label, image_field)
    started = time.monotonic()
    attempt = begin_attempt(registration, pks, fingerprints, int(settings.MAX_EMBED_ATTEMPTS))
    hold_attempt(attempt, self.request.id)
    for pk in attempt.alone:  # a task started it and never finished: on its own, not to sink a batch again
        _send(label, image_field, [pk], force, fingerprint)
    if not attempt.here:
        return {**IndexReport().as_dict(), "failed": len(attempt.given_up), "alone": len(attempt.alone)}
    pks = attempt.here
    try:
        report = index_objects(registration, pks, force=force, fingerprints=fingerprints)
    except WeightsUnavailable as exc:
        end_attempt(attempt)
        # The setup, not these objects, and no retry helps until it is fixed: one line that says
        # what to do, no traceback per task. The rows stay pending; the sweep (on worker start and
        # from beat) queues them again. A sweep of 20,000 pending images is 600 tasks: the same
        # message is an ERROR once per WEIGHTS_ERROR_EVERY seconds in a process, DEBUG in between.
        _log_weights_error(label, len(pks), exc)
        return {**IndexReport().as_dict(), "pending": len(pks), "error": str(exc)}
    except SoftTimeLimitExceeded:
        # Nothing of the batch was stored (each batch commits whole). Retried whole, or by the
        # sweep, it would pass the limit again, for ever: it goes round in halves instead. One image
        # alone keeps its attempt: at MAX_EMBED_ATTEMPTS it is failed, not swept again for ever.
        if len(pks) > 1:
            end_attempt(attempt)
        _split(label, image_field, list(pks), force, fingerprint)
        return {**IndexReport().as_dict(), "pending": len(pks), "error": "soft time limit"}
    except BaseException as exc:
        # SystemExit: the pool ends this process. A shutdown's (a deploy) is not the images' fault;
        # the hard time limit's (SIGTERM, then SIGKILL 0.1 s later) is, and keeps its attempts. So
        # does gevent's pool's (gevent.Timeout, raised in the task: no SystemExit, no Exception).
        if isinstance(exc, Exception) or not _past_hard_limit(self, started):
            _end_quietly(attempt)
        raise
    end_attempt(attempt)
    if (report.embedded or report.removed) and not fingerprint:
        _fit_when_due()
    if report.retry:
        # Only the images that could not be read go round again; the rest are stored.
        raise self.retry(
            args=(label, image_field, report.retry, force, fingerprint),
            exc=RetryLater(f"{len(report.retry)} images unreadable for now"),
            countdown=min(600, 2 ** (self.request.retries + 1)),
        )
    return report.as_dict()


def _past_hard_limit(task, started: float) -> bool:
    """Whether the task has run for about its hard time limit (Celery's ``task_time_limit``)."""
    hard = (task.request.timelimit or (None, None))[0] or task.time_limit or task.app.conf.task_time_limit
    return bool(hard) and time.monotonic() - started >= float(hard) - HARD_LIMIT_MARGIN


# The pool's timer runs from when the process took the job, a little before the task's own clock.
HARD_LIMIT_MARGIN = 1.0


def _end_quietly(attempt) -> None:
    """The task failed (a retry follows): take back its attempts if the database lets us."""
    try:
        end_attempt(attempt)
    except DatabaseError:
        logger.debug("Could not take back the attempts of a failed visual search task", exc_info=True)


def _send(label: str, image_field: str, pks: list, force: bool, fingerprint: str | None) -> None:
    try:
        queue.send(queue.EMBED_OBJECTS, (label, image_field, pks, force) + ((fingerprint,) if fingerprint else ()), queue=settings.QUEUE)
    except Exception as exc:  # the broker: the rows stay pending for the sweep
        logger.warning("Could not queue visual search work for %s (%s): %s", label, counted(len(pks), "id"), queue.broker_problem(exc))


def _split(label: str, image_field: str, pks: list, force: bool, fingerprint: str | None) -> None:
    """Queue ``pks`` again as two tasks, after a batch passed the task's soft time limit."""
    if len(pks) == 1:
        logger.error(
            "Visual search: embedding %s %s alone took longer than the task's soft time limit; it stays pending. "
            "Raise task_soft_time_limit (and task_time_limit) for the visual search tasks, or give the workers "
            "more CPU. After VISUAL_SEARCH['MAX_EMBED_ATTEMPTS'] such attempts it is marked failed.",
            label, pks[0],
        )
        return
    half = len(pks) // 2
    try:
        for part in (pks[:half], pks[half:]):
            queue.send(queue.EMBED_OBJECTS, (label, image_field, part, force) + ((fingerprint,) if fingerprint else ()), queue=settings.QUEUE)
    except Exception as exc:  # the broker: the rows stay pending for the sweep
        logger.warning("Could not queue visual search work for %s (%s): %s", label, counted(len(pks), "id"), queue.broker_problem(exc))
        return
    logger.warning(
        "Visual search: a batch of %s %s images passed the task's soft time limit; split into 2 tasks. Lower "
        "VISUAL_SEARCH['BATCH_SIZE'] or raise task_soft_time_limit so that a batch fits.",
        len(pks), label,
    )


def _fit_when_due() -> None:
    """After images were embedded or removed: queue a whitening fit if the catalogue now needs one."""
    if current_app.conf.task_always_eager:
        return  # tests running tasks in their own process: no fit of minutes after each batch
    try:
        due = fit_due()
    except DatabaseError:
        logger.warning("Could not tell whether the visual search whitening is due; the sweep will", exc_info=True)
        return
    if due:
        queue.schedule_fit()


# A catalogue that never stops growing (a long import) still gets a fit after this many put-offs.
FIT_MAX_POSTPONED = 30


@shared_task(name=queue.FIT_WHITENING, acks_late=True)
def fit_whitening(postponed: int = 0) -> int:
    """Learn the whitening and score calibration where they are due (:func:`fit_if_needed`), once
    the indexing that made them due has finished: put off while images are still pending (at most
    ``FIT_MAX_POSTPONED`` times), unless the catalogue has outgrown its whitening (:func:`outgrown`):
    its searches compare by plain cosine and are never confident until the fit."""
    busy = ImageEmbedding.objects.filter(
        status=ImageEmbedding.Status.PENDING,
        fingerprint__in=indexing_fingerprints(),
        updated_at__gte=timezone.now() - timedelta(seconds=float(settings.SWEEP_AFTER_SECONDS)),
    ).exists()
    if busy and postponed < FIT_MAX_POSTPONED and not outgrown():
        queue.send(queue.FIT_WHITENING, (postponed + 1,), countdown=queue.FIT_DELAY, queue=settings.QUEUE)
        return 0
    queue.fit_unqueued()
    fitted = fit_if_needed()
    if fitted:
        logger.info("Visual search whitening and score calibration learned again for %s", counted(len(fitted), "model"))
    return len(fitted)


# Beat's plain scheduler sends the sweep from the public schema (tenant-schemas-celery's CeleryApp
# names the schema the task was sent from): every run failed with "relation ... does not exist".
PUBLIC_SWEEP = (
    "Visual search: the sweep ran in the public schema of a django-tenants platform, where no shop's images are; "
    "nothing swept. Run beat with tenant-schemas-celery's scheduler, which sends it once per shop: "
    "celery -A yourproject beat --scheduler tenant_schemas_celery.scheduler.TenantAwareScheduler "
    "(docs/deployment.md, 'Multi-tenant shops (django-tenants)')."
)


@shared_task(name=queue.SWEEP, acks_late=True)
def sweep(older_than: float | None = None) -> int:
    """Queue every pending row older than ``SWEEP_AFTER_SECONDS``, every stale image again, and
    every image with no row at all, but none that a task still waiting in a Redis broker holds
    (:func:`~visual_search.queue.waiting_in_broker`); with a broker that can only count what waits
    (RabbitMQ: :func:`~visual_search.queue.waiting_count`), no old pending row while anything waits.

    Runs on worker start and periodically (add it to Celery beat): rows left pending while the
    broker was down, images made stale by a settings change (no row of the current model), and
    objects saved without signals (``bulk_create``, ``QuerySet.update``, raw SQL imports) get
    computed with no manual step; the rows of images out of search (a variant hidden by an
    ``update()``: :func:`~visual_search.reindex.out_of_search`) are deleted, and those of objects that
    do not exist (:func:`~visual_search.reindex.orphaned`: an index restored without them). A retired version's
    rows beside current ones are left alone (they wait for a rollback); pending rows of a version no longer being built are deleted,
    since nothing would ever compute them. First, a model switch whose next check was lost (a killed
    worker held it) is checked again: at once where ``older_than`` is under a minute (a worker
    starts, or one was found dead), else after a minute without a check.
    """
    if in_public_schema():
        logger.warning(PUBLIC_SWEEP)
        return 0
    if older_than is None:
        older_than = float(settings.SWEEP_AFTER_SECONDS)
    resume_stalled_builds(0 if older_than < STALLED_AFTER_SECONDS else STALLED_AFTER_SECONDS)
    cutoff = timezone.now() - timedelta(seconds=older_than)
    fingerprints = indexing_fingerprints()
    # A long backlog (a reindex of 20,000 images) waits in the broker past SWEEP_AFTER_SECONDS: its
    # rows were queued again at each sweep, and by a worker starting meanwhile. Not lost: left alone.
    waiting = queue.waiting_in_broker(older_than)
    # A broker whose messages cannot be read (RabbitMQ) can count them: while some wait, the old
    # pending rows are theirs (a worker killed gives its messages back to RabbitMQ at once). Queued
    # again, a backlog was queued once more by each sweep, and whole by each worker start.
    backlog = queue.waiting_count() if waiting is None and use_celery() else None
    if backlog:
        logger.info(
            "Sweep: the broker's queue holds %s; pending images are left to them and queued again once it is empty",
            counted(backlog, "message"),
        )
    queued = 0
    for registration in get_registrations():
        rows = ImageEmbedding.objects.filter(
            content_type__app_label=registration.model._meta.app_label,
            content_type__model=registration.model._meta.model_name,
            field_name=registration.image_field,
        )
        pending = rows.filter(status=ImageEmbedding.Status.PENDING)
        pending.exclude(fingerprint__in=fingerprints).delete()
        old = pending.filter(fingerprint__in=fingerprints, updated_at__lte=cutoff).values_list("object_id", "fingerprint")
        held = (waiting or {}).get((registration.label, registration.image_field), set())
        old = [] if backlog else [pk for pk, fingerprint in old if (pk, None) not in held and (pk, fingerprint) not in held]
        others = [pk for pk in map(str, select_pks(registration, ["stale", "missing"])) if (pk, None) not in held]
        hold_renamed(registration)  # a vector of another file than the object shows is searched no more
        pks = list(dict.fromkeys([*old, *others]))
        queued += enqueue(registration.label, registration.image_field, pks)
        for pk in out_of_search(registration):  # hidden without a save (QuerySet.update): its rows go
            remove_object(registration, pk)
        for pk in orphaned(registration):  # of objects that do not exist (a restore, a delete in SQL)
            remove_object(registration, pk)
    if queued:
        logger.info("Sweep queued %s", counted(queued, "image"))
    repair_index(fingerprints)
    fit_if_needed()  # the catalogue grew or changed model: learn its whitening again
    return queued


def repair_index(fingerprints) -> int:
    """Put back in the backend any ready row it lacks (:meth:`~visual_search.backends.base.Backend.repair`)."""
    backend, repaired = get_backend(), 0
    for model in {registration.result_model for registration in get_registrations()}:
        result_type = ContentType.objects.get_for_model(model)
        for fingerprint in fingerprints:
            repaired += backend.repair(result_type.pk, fingerprint)
    return repaired


@shared_task(name=queue.ACTIVATE_VERSION, acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=2, max_retries=8)
def activate_version(version_id: int | None, keep_previous: bool = False, step: str | None = None) -> dict:
    """Build a model version's vectors on the workers, then switch searches to it.

    Queued by ``activate(..., asynchronous=True)`` (``version_id`` None: back to the pretrained
    model). Each run checks what is left (the missing vectors themselves are ``embed_objects``
    tasks spread over the workers), stores the progress on the version, and queues itself again
    a few seconds later until nothing is left; then the switch is one transaction. ``step`` names
    the check: the sweep sends a lost one again under a new name (``resume_stalled_builds``).
    """
    again = build_step(version_id, keep_previous, step)
    if again is not None:
        activate_version.apply_async(args=(version_id, keep_previous, again.step), countdown=again.after, queue=settings.QUEUE)
    return {"version": version_id, "finished": again is None}


# A copy of a training job that another run is still training looks again this many seconds later.
TRAINING_RECHECK = 60


@shared_task(bind=True, name=queue.TRAIN_MODEL, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def train_model(self, version_id: int) -> dict:
    """Train the ``ModelVersion`` ``version_id`` (see :mod:`visual_search.training.jobs`).

    Acknowledged late: a worker lost mid-training gives the job back, and another starts it over.
    A version that is no longer ``training`` (cancelled, or finished by an earlier delivery) is left alone.
    One that another run is training (alive: :func:`~visual_search.training.jobs.trained_elsewhere`)
    is looked at again a minute later, and trained here only once that run has stopped noting progress:
    RabbitMQ gave the job to a second worker when it closed the first one's channel past its
    ``consumer_timeout``, and both trained it side by side.
    """
    version = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.TRAINING).first()
    if version is None:
        return {"skipped": version_id}
    if trained_elsewhere(version):
        logger.warning(
            "Visual search: %s is being trained by another run (this is a second delivery of its job: on RabbitMQ, "
            "past its consumer_timeout, docs/celery.md); looking again in %s s", version, TRAINING_RECHECK,
        )
        raise self.retry(countdown=TRAINING_RECHECK)
    version = run_training(version_id)
    return {"version": version.pk, "status": version.status, "after": version.metrics.get("after", {})}
