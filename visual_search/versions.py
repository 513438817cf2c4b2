"""Model versions: which embedding model the shop searches with, and switching between them safely.

A trained :class:`~visual_search.models.ModelVersion` makes vectors of its own fingerprint. Rows of
several fingerprints live side by side (one row per image and fingerprint) and a search only ever
compares vectors of the *current* fingerprint, so a switch never mixes versions. Activating one:

1. ``building``: every registered image gets a vector of the new fingerprint. Stored checksums are
   reused: an image whose row of that fingerprint describes the same file is not read again, so
   re-activating a version whose rows are still there (a rollback) computes almost nothing.
   Meanwhile searches keep using the active version's vectors, and the building version is an
   *indexing fingerprint*: an image saved during the build gets a vector of both.
2. its whitening is fitted on its own vectors (when the catalogue is large enough for one);
3. one transaction marks it ``active`` and the old one ``retired``. Every process follows within
   ``REFRESH_INTERVAL`` seconds, and since the old rows stay, a process that still uses the old
   fingerprint for that second still answers fully, from one version.

:func:`rollback` activates the version that was active before (or returns to the pretrained model
the settings describe); :func:`prune` deletes the vectors no rollback needs. The command is
``manage.py visual_search_versions``; the admin has the same actions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import queue
from .backends import get_backend
from .batching import chunked
from .conf import settings
from .embeddings.spec import network_fingerprint, settings_fingerprint
from .exceptions import VisualSearchError
from .indexing import index_objects
from .models import ImageEmbedding, ModelVersion, Whitening
from .registry import get_registrations

# Which version serves is serving's; these names are part of this module's API since versions came.
from .serving import (  # noqa: F401
    PRETRAINED_KEY,
    active_version,
    forget_serving_version,
    indexing_fingerprints,
    kept_fingerprints,
    serving_version,
)
from .whitening import FitProgress, fit_if_needed

logger = logging.getLogger("visual_search")
Status = ModelVersion.Status
# progress(done, total): images whose vector of the version being built exists, of those needed.
Progress = Callable[[int, int], None]

# A build goes over the catalogue again while images changed under it; this many passes at most.
MAX_PASSES = 5
# Asynchronous builds: the check task runs this often, and re-queues what is left after this many
# checks without progress (a lost task, an unreadable image), at most MAX_PASSES times.
CHECK_EVERY_SECONDS = 5.0
IDLE_CHECKS = 6
# The sweep sends a build's next check again when the last one is older than this (beat's sweep;
# a worker start after a kill sends it at once): the worker that held it may have been killed, and
# the broker gives such a message back only after its visibility timeout (Redis: an hour by default).
STALLED_AFTER_SECONDS = 60.0
# ... and when the build was switching (whitening fit, then the switch): that may take minutes.
SWITCH_STALLED_AFTER_SECONDS = 900.0
# How often the whitening fit of an asynchronous build stores its progress (one UPDATE each time).
FIT_PROGRESS_EVERY_SECONDS = 2.0

# The fingerprint of a trained version (its network config and weights); kept under this name.
version_fingerprint = network_fingerprint


class VersionError(VisualSearchError):
    """A version cannot be activated, or there is nothing to roll back to; the message says why."""


class NotBetter(VersionError):
    """:func:`activate` refused a version whose held-out figures do not beat the model in use.

    ``reason`` says why, with the figures compared (:func:`comparison`, in ``figures``), without
    the command-line way out that the message adds, so the admin can offer its own."""

    def __init__(self, message: str, *, reason: str, version: ModelVersion, figures: dict[str, Any]):
        super().__init__(message)
        self.reason, self.version, self.figures = reason, version, figures


def rollback_fingerprint() -> str | None:
    """The fingerprint :func:`rollback` returns to, or None when no version is active."""
    active = active_version()
    if active is None:
        return None
    return active.previous.fingerprint if active.previous is not None else settings_fingerprint()


# -- activating a version -----------------------------------------------------------------------------

@dataclass
class _Target:
    """What a build makes vectors for: a version, or (``version`` None) the pretrained model."""

    version: ModelVersion | None
    fingerprint: str
    # The row that shows progress and takes a cancel: the version, or the active one being left.
    holder: ModelVersion

    @property
    def name(self) -> str:
        return str(self.version.label) if self.version is not None else _("the pretrained model")


def activate(
    version: ModelVersion | int,
    *,
    progress: Progress | None = None,
    asynchronous: bool = False,
    force: bool = False,
    fit_progress: FitProgress | None = None,
) -> ModelVersion:
    """Compute ``version``'s vectors for every registered image, then switch searches to it.

    A version whose held-out figures do not beat the model in use (:func:`comparison`) is refused,
    with the figures, unless ``force``.

    Searches go on with the active version's vectors until the switch, which is one transaction
    (the old version becomes ``retired`` and rolling back returns to it). ``asynchronous=True``
    queues the work on the Celery workers when Celery is used (the version stays ``building`` and
    shows its progress) and returns at once; otherwise it runs here, calling ``progress(done,
    total)``, then ``fit_progress(done, total)`` while its whitening's customer views go through the
    network (:func:`~visual_search.whitening.fit`). Raises :class:`VersionError` when the version
    cannot be activated.
    """
    if not isinstance(version, ModelVersion):
        version = _get(version)
    check_activation(version, force=force)
    target = _Target(version, version.fingerprint, version)
    return _run(target, keep_previous=False, progress=progress, asynchronous=asynchronous, fit_progress=fit_progress)


def check_activation(version: ModelVersion, *, force: bool = False) -> None:
    """Raise :class:`VersionError` if :func:`activate` would refuse ``version`` (its status; unless
    ``force``, figures that do not beat the model in use): before anything is counted or queued."""
    version.refresh_from_db()
    _check_activatable(version)
    if not force:
        _check_better(version)


def rollback(*, progress: Progress | None = None, asynchronous: bool = False, fit_progress: FitProgress | None = None) -> ModelVersion | None:
    """Return to the version that was active before the active one (None: the pretrained model).
    ``progress`` and ``fit_progress`` as :func:`activate`'s.

    Its rows are still there unless pruned, so only images changed since the switch are computed.
    Rolling back again goes one step further back, down to the pretrained model. Returns the
    version rolled back to (``building`` while queued), or None for the pretrained model.
    """

    current = active_version()
    if current is None:
        raise VersionError(_(
            "Nothing to roll back to: no trained version is active, searches already use the pretrained "
            "model the settings describe. `manage.py visual_search_versions list` shows the versions."
        ))
    _check_no_build(current)
    target = current.previous
    if target is None:
        if current.previous_fingerprint and current.previous_fingerprint != settings_fingerprint():
            logger.warning(
                "The settings changed since %s was activated: returning to the pretrained model they describe now (%s).",
                current,
                settings_fingerprint(),
            )
        _run(_Target(None, settings_fingerprint(), current), keep_previous=True, progress=progress, asynchronous=asynchronous, fit_progress=fit_progress)
        return None
    if target.status not in (Status.RETIRED, Status.TRAINED) or not target.weights_file:
        raise VersionError(_("Cannot roll back to %(version)s: it is %(status)s. Activate another version instead.") % {
            "version": target, "status": target.get_status_display().lower()})
    return _run(_Target(target, target.fingerprint, target), keep_previous=True, progress=progress, asynchronous=asynchronous, fit_progress=fit_progress)


def _get(pk: int) -> ModelVersion:
    try:
        return ModelVersion.objects.get(pk=pk)
    except ModelVersion.DoesNotExist:
        raise VersionError(_("There is no model version %(pk)s: `manage.py visual_search_versions list` shows them.") % {"pk": pk}) from None


def _check_activatable(version: ModelVersion) -> None:
    why = {
        Status.ACTIVE: lambda: _("it is already active"),
        Status.TRAINING: lambda: _("it is still training; activate it once it is trained"),
        Status.FAILED: lambda: _("its training failed (%(reason)s); train a new version") % {"reason": version.error or _("no reason recorded")},
        Status.CANCELLED: lambda: _("its training was cancelled; train a new version"),
    }.get(version.status, lambda: None)()
    if why is None and not (version.fingerprint and version.weights_file):
        why = _("it has no trained weights")
    if why:
        raise VersionError(_("Cannot activate %(version)s: %(why)s.") % {"version": version, "why": why})
    _check_no_build(version)


def comparison(version: ModelVersion) -> dict[str, Any] | None:
    """How ``version`` compares with the model in use on its held-out photos, or None without figures.

    ``{"after": its P@1, "serving": the P@1 of the model in use, "serving_name": which model that
    is, "better": bool}``. The model in use is the pretrained one ("before", measured on the same
    photos at training time) or, when a trained version is active, the better of that and the
    active version's own held-out P@1. Compared with "before", also ``"difference"``: the paired
    change on those photos and its standard error (:func:`~visual_search.training.evaluation.paired_difference`).
    """
    metrics = version.metrics or {}
    after = (metrics.get("after") or {}).get("p_at_1")
    before = (metrics.get("before") or {}).get("p_at_1")
    if not isinstance(after, (int, float)) or not isinstance(before, (int, float)):
        return None
    serving, name = float(before), _("the pretrained model")
    active = active_version()
    if active is not None and active.pk != version.pk:
        theirs = ((active.metrics or {}).get("after") or {}).get("p_at_1")
        if isinstance(theirs, (int, float)) and theirs > serving:
            serving, name = float(theirs), str(active.label)
    figures = {"after": float(after), "serving": serving, "serving_name": name, "better": float(after) > serving}
    difference = metrics.get("difference")
    if serving == float(before) and isinstance(difference, dict) and isinstance(difference.get("standard_error"), (int, float)):
        figures["difference"] = difference
    return figures


def noise_note(figures: dict) -> str:
    """What the paired difference of :func:`comparison` says, as a sentence, or "" without one:
    " The difference, -3.7 points, is within the noise of 81 photos (one standard error: 3.3 points)."
    """
    difference = figures.get("difference")
    if not difference:
        return ""
    figures = {
        "difference": ("-" if difference["p_at_1"] < 0 else "+") + _decimal(abs(100 * difference["p_at_1"])),
        "photos": difference["photos"],
        "error": _decimal(100 * difference["standard_error"]),
    }
    if difference.get("within_noise"):
        text = _("The difference, %(difference)s points, is within the noise of %(photos)s photos (one standard error: %(error)s points).")
    else:
        text = _("The difference, %(difference)s points, is more than the noise of %(photos)s photos (one standard error: %(error)s points).")
    return " " + text % figures


def _check_better(version: ModelVersion) -> None:
    figures = comparison(version)
    if figures is None or figures["better"]:
        return
    within_noise = bool((figures.get("difference") or {}).get("within_noise"))
    # Within the noise it is not better, but not shown to be worse either: say so, not "worse".
    verdict = _("it is not shown to be better.") if within_noise else _("customers would get worse results.")
    reason = _(
        "Not activating %(label)s: on its held-out photos it puts the right product first %(after)s of the time, "
        "%(serving_name)s %(serving)s; %(verdict)s"
    ) % {"label": version.label, "after": _percent(figures["after"]), "serving_name": figures["serving_name"],
         "serving": _percent(figures["serving"]), "verdict": verdict}
    reason += noise_note(figures) + (_speed_note(version) if active_version() is None else "")
    raise NotBetter(
        reason + " " + _("Train again (more epochs, or --blocks 4,5), or activate it anyway "
                         "(`manage.py visual_search_versions activate %(pk)s --force`).") % {"pk": version.pk},
        reason=reason, version=version, figures=figures,
    )


def _percent(share: float) -> str:
    """``0.3`` as the active language writes a percentage with one decimal: "30.0%", "30,0\u00a0%"."""
    return _("{n}%").format(n=_decimal(100 * share))


def _decimal(number: float) -> str:
    """``number`` with one decimal, rounded, as the active language writes it: "3.7", "3,7".
    (``number_format`` cuts a float's digits off: 3.6999... read "3.6".)"""
    return formats.number_format(round(number, 1), 1)


def cost_change(metrics: dict | None) -> tuple[tuple[int, int], tuple[int, int], float] | None:
    """What embedding an image costs before and after a training, from its ``metrics["passes"]``:
    ``((passes, px) before, (passes, px) after, how many times faster after is)``, or None."""
    try:
        (n_before, size_before), (n_after, size_after) = (metrics or {})["passes"]["before"], (metrics or {})["passes"]["after"]
        speed = (n_before * size_before**2) / (n_after * size_after**2)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return (int(n_before), int(size_before)), (int(n_after), int(size_after)), float(speed)


def _speed_note(version: ModelVersion) -> str:
    """How much faster ``version`` embeds than the pretrained model (its training's ``passes``), or ""."""
    cost = cost_change(version.metrics)
    if cost is None or cost[2] <= 1:
        return ""
    (before, before_size), (after, after_size), speed = cost
    return " " + ngettext(
        "It embeds a photo and an image %(speed)sx faster (%(after)d VGG16 pass at %(after_size)d px, against %(before)d "
        "at %(before_size)d px): if speed matters more to your shop, that may be worth it.",
        "It embeds a photo and an image %(speed)sx faster (%(after)d VGG16 passes at %(after_size)d px, against %(before)d "
        "at %(before_size)d px): if speed matters more to your shop, that may be worth it.",
        after,
    ) % {"speed": _decimal(speed), "after": after, "after_size": after_size, "before": before, "before_size": before_size}


def _check_no_build(version: ModelVersion) -> None:
    other = ModelVersion.objects.filter(status=Status.BUILDING).exclude(pk=version.pk).first()
    active = ModelVersion.objects.filter(status=Status.ACTIVE).exclude(pk=version.pk).first()
    if other is None and active is not None and (active.progress or {}).get(PRETRAINED_KEY):
        other = active
    if other is not None:
        raise VersionError(_(
            "A switch is already in progress (%(version)s, %(done)s/%(total)s images); wait for it to finish, or cancel it first."
        ) % {"version": other, "done": (other.progress or {}).get("done", 0), "total": (other.progress or {}).get("total", 0)})


def _run(target: _Target, *, keep_previous: bool, progress: Progress | None, asynchronous: bool, fit_progress: FitProgress | None = None) -> ModelVersion:
    asynchronous = asynchronous and queue.use_celery()
    _start(target, keep_previous, _new_step() if asynchronous else None)
    if asynchronous:
        try:
            queue.send(queue.ACTIVATE_VERSION, (_task_id(target), keep_previous, target.holder.progress["step"]), queue=settings.QUEUE)
        except Exception as exc:  # the broker is unreachable
            _abandon(target, f"Could not queue the build: {exc}")
            raise VersionError(_("Could not queue the activation of %(name)s (%(error)s); is the broker running?") % {
                "name": target.name, "error": exc}) from exc
        target.holder.refresh_from_db()
        return target.holder
    try:
        _build(target, progress)
        _stop_if_cancelled(target)
    except VersionError:
        raise
    except Exception as exc:
        _abandon(target, f"{type(exc).__name__}: {exc}")
        raise
    return _finish(target, keep_previous, fit_progress)


def _task_id(target: _Target) -> int | None:
    return target.version.pk if target.version is not None else None


def _start(target: _Target, keep_previous: bool, step: str | None = None) -> None:
    """Make the target an indexing fingerprint: from now on changed images get its vector too."""
    state = {"stage": "building", "done": 0, "total": 0, "keep_previous": keep_previous, "checked_at": time.time()}
    if step is not None:  # built by the workers: its checks are named (build_step)
        state["step"] = step
    if target.version is None:
        state[PRETRAINED_KEY] = target.fingerprint
        ModelVersion.objects.filter(pk=target.holder.pk).update(progress=state, cancel_requested=False)
    else:
        ModelVersion.objects.filter(pk=target.holder.pk).update(status=Status.BUILDING, progress=state, error="", cancel_requested=False)
    target.holder.refresh_from_db()
    logger.info("Computing the vectors of %s (fingerprint %s)", target.name, target.fingerprint)


def images_to_build(fingerprint: str) -> list[tuple[Any, list]]:
    """``(registration, pks)`` of the images that lack a vector of ``fingerprint`` for their file.

    Uses the stored rows only (no image is read): an image counts as done when its ready or failed
    row of that fingerprint names the same file and result, with the same checksum as the active
    version's row of it. ``index_objects`` then reads the others and still skips those whose bytes
    did not change.
    """

    current = indexing_fingerprints()[0]
    settled = [ImageEmbedding.Status.READY, ImageEmbedding.Status.FAILED]
    work = []
    for registration in get_registrations():
        field = registration.image_field
        # From the primary: the vectors the build has just stored, and every image there is (a read
        # replica that lags showed none of them done, and the build gave up as if unreadable).
        rows = ImageEmbedding.objects.on_primary().of_field(registration.model, field)
        built = {
            oid: rest
            for oid, *rest in rows.filter(fingerprint=fingerprint, status__in=settled).values_list("object_id", "source_name", "result_id", "checksum")
        }
        active = {}
        if current != fingerprint:
            active = dict(rows.filter(fingerprint=current, status__in=settled).values_list("object_id", "checksum"))
        objects = registration.searchable_on_primary().exclude(**{field: ""}).exclude(**{f"{field}__isnull": True})
        pks = []
        for pk, name, result_pk in objects.order_by("pk").values_list("pk", field, registration.result_pk_lookup()).iterator():
            have = built.get(str(pk))
            if have is None or have[:2] != [name, str(result_pk)] or active.get(str(pk), have[2]) != have[2]:
                pks.append(pk)
        if pks:
            work.append((registration, pks))
    return work


def _build(target: _Target, progress: Progress | None) -> None:
    """Compute the target's vectors here, pass after pass until no image lacks one."""

    done, chunk = 0, int(settings.BATCH_SIZE) * 4
    for _attempt in range(MAX_PASSES):
        work = images_to_build(target.fingerprint)
        remaining = sum(len(pks) for _, pks in work)
        if not remaining:
            return
        total, before = done + remaining, done
        _save_progress(target, done, total)
        for registration, pks in work:
            for batch in chunked(pks, chunk):
                _stop_if_cancelled(target)
                report = index_objects(registration, batch, fingerprints=[target.fingerprint])
                done += len(batch) - len(set(map(str, report.retry)))
                _save_progress(target, done, total)
                if progress:
                    progress(done, total)
        if done == before:
            break  # a whole pass and not one image could be read
    left = sum(len(pks) for _, pks in images_to_build(target.fingerprint))
    if left:
        message = ngettext(
            "%(count)d image still has no vector of %(name)s (unreadable, or changed all the time); "
            "nothing was switched. Check the storage, then activate again: what is done is kept.",
            "%(count)d images still have no vector of %(name)s (unreadable, or changed all the time); "
            "nothing was switched. Check the storage, then activate again: what is done is kept.",
            left,
        ) % {"count": left, "name": target.name}
        _abandon(target, message)
        raise VersionError(message)


def _saved_fit_progress(target: _Target, total: int, step: str | None) -> FitProgress:
    """The whitening fit's progress on the build's row, ``fitting: [done, of]``, at most every
    :data:`FIT_PROGRESS_EVERY_SECONDS`: the admin shows it (it said "building" for the minutes of a
    fit, the images all done), and the sweep sees the check alive."""
    saved_at = 0.0

    def save(done: int, of: int) -> None:
        nonlocal saved_at
        if done < of and time.monotonic() - saved_at < FIT_PROGRESS_EVERY_SECONDS:
            return
        saved_at = time.monotonic()
        _save_progress(target, total, total, expect=step, left=0, fitting=[done, of])

    return save


def _save_progress(target: _Target, done: int, total: int, *, expect: str | None = None, **extra) -> bool:
    """Store the build's progress; with ``expect``, only while the build's check is still that one
    (see :func:`build_step`): False when another check took over."""
    holder = ModelVersion.objects.filter(pk=target.holder.pk)
    state = {**(holder.values_list("progress", flat=True).first() or {}), "stage": "building", "done": done, "total": total, **extra}
    if expect is not None:
        holder = holder.filter(progress__step=expect)
    return bool(holder.update(progress={**state, "checked_at": time.time()}))


def _new_step() -> str:
    return uuid.uuid4().hex[:16]


def _stop_if_cancelled(target: _Target) -> None:
    if ModelVersion.objects.filter(pk=target.holder.pk, cancel_requested=True).exists():
        _abandon(target, "", stage="cancelled")
        raise VersionError(_("Switching to %(name)s was cancelled; searches still use the active version.") % {"name": target.name})


def _abandon(target: _Target, reason: str, stage: str = "failed") -> None:
    """Stop building: the target is no longer an indexing fingerprint; its finished rows are kept."""
    holder = ModelVersion.objects.get(pk=target.holder.pk)
    state = {k: v for k, v in (holder.progress or {}).items() if k != PRETRAINED_KEY}
    state["stage"] = stage
    holder.progress, holder.cancel_requested = state, False
    if target.version is not None:
        holder.status = Status.RETIRED if holder.activated_at else Status.TRAINED
        holder.error = reason
    holder.save(update_fields=["progress", "cancel_requested", "status", "error"])
    if target.fingerprint not in indexing_fingerprints():
        # Nothing will compute them now; activating again starts from the rows that are ready.
        ImageEmbedding.objects.filter(fingerprint=target.fingerprint, status=ImageEmbedding.Status.PENDING).delete()
    logger.warning("Switching to %s stopped (%s): %s", target.name, stage, reason or "asked by staff")


def _finish(target: _Target, keep_previous: bool, fit_progress: FitProgress | None = None) -> ModelVersion | None:
    """Fit the target's whitening, then switch every search to it in one transaction."""

    refitted = {w.result_type_id for w in fit_if_needed(fingerprint=target.fingerprint, progress=fit_progress)}
    _fill_backend(target.fingerprint, skip=refitted)
    target.holder.refresh_from_db()
    with transaction.atomic():
        # A check sent again by the sweep (resume_stalled_builds) may have switched meanwhile.
        holder = ModelVersion.objects.select_for_update().get(pk=target.holder.pk)
        building = holder.status == Status.BUILDING if target.version is not None else bool((holder.progress or {}).get(PRETRAINED_KEY))
        if not building:
            logger.info("%s: already switched by another check", target.name)
            return holder
        old = ModelVersion.objects.select_for_update().filter(status=Status.ACTIVE).first()
        state = {"stage": "done", "done": target.holder.progress.get("done", 0), "total": target.holder.progress.get("total", 0)}
        if old is not None:
            old.status = Status.RETIRED
            # The holder of a return to the pretrained model: that build is done, not "building".
            old.progress = {**{k: v for k, v in (old.progress or {}).items() if k != PRETRAINED_KEY}, "stage": "done"}
            old.save(update_fields=["status", "progress"])
        new = None
        if target.version is not None:
            new = ModelVersion.objects.select_for_update().get(pk=target.version.pk)
            holder_state = {**{k: v for k, v in (new.progress or {}).items() if k != "fitting"}, **state}
            new.status, new.progress, new.activated_at, new.error = Status.ACTIVE, holder_state, timezone.now(), ""
            if not keep_previous:
                new.previous = old
                new.previous_fingerprint = old.fingerprint if old is not None else settings_fingerprint()
            new.save()
        transaction.on_commit(_expire)
    logger.info("Searches now use %s (fingerprint %s)", target.name, target.fingerprint)
    return new if new is not None else old


def _fill_backend(fingerprint: str, skip: set[int]) -> None:
    """Make sure a backend with its own copy (pgvector) holds this fingerprint's vectors before the
    switch: a rollback target's rows were never handed to it again since it was retired, or were
    dropped by a rebuild. A whitening refit (``skip``) has already rebuilt them; for backends that
    read the rows (NumPy) or rebuild from them lazily (FAISS) this only expires their memory."""

    backend = get_backend()
    if backend.reads_rows:
        return
    types = set(ImageEmbedding.objects.ready(fingerprint).values_list("result_type_id", flat=True).distinct())
    for result_type_id in sorted(types - set(skip)):
        backend.whitening_changed(result_type_id, fingerprint)


def _expire() -> None:
    """This process switches at once (the others within ``REFRESH_INTERVAL``)."""

    forget_serving_version()
    get_backend().expire()


@dataclass(frozen=True)
class NextCheck:
    after: float  # seconds
    step: str | None  # what the next check is called (None: a check queued before steps were named)


def build_step(version_id: int | None, keep_previous: bool, step: str | None = None) -> NextCheck | None:
    """One check of an asynchronous build (the ``visual_search.activate_version`` task).

    The first check queues the missing vectors as ``embed_objects`` tasks, spread over the
    workers; later ones count what is left, queue it again when nothing moved for a while, and
    switch once nothing is left. Returns when to check again, or None when done.

    Each check is named (``step``, kept in the build's progress) and names the next one: a check
    whose name is no longer the build's was replaced by one the sweep sent again
    (:func:`resume_stalled_builds`), and stops, so one chain of checks goes on.
    """
    target = _async_target(version_id)
    if target is None:
        return None  # cancelled, failed or finished meanwhile
    if step is not None and (target.holder.progress or {}).get("step") != step:
        logger.info("%s: this check was replaced by a later one; stopping it", target.name)
        return None
    if target.holder.cancel_requested:
        _abandon(target, "", stage="cancelled")
        return None
    work = images_to_build(target.fingerprint)
    remaining = sum(len(pks) for _, pks in work)
    state = target.holder.progress or {}
    if not remaining:
        total = max(int(state.get("total") or 0), int(state.get("done") or 0))
        # The same name: this check, delivered again after its worker died, may still switch.
        if _save_progress(target, total, total, expect=step, left=0):
            _finish(target, keep_previous, _saved_fit_progress(target, total, step))
        return None
    total = max(int(state.get("total") or 0), remaining, int(state.get("done") or 0) + remaining)
    queued_once = "left" in state
    idle = 0 if remaining < state.get("left", remaining + 1) else int(state.get("idle", 0)) + 1
    passes = int(state.get("passes", 0))
    if not queued_once or idle >= IDLE_CHECKS:
        if passes >= MAX_PASSES:
            _abandon(target, ngettext(
                "%(count)d image could not get a vector of %(name)s after %(passes)d tries; nothing was switched.",
                "%(count)d images could not get a vector of %(name)s after %(passes)d tries; nothing was switched.",
                remaining,
            ) % {"count": remaining, "name": target.name, "passes": passes})
            return None
        _queue(work, target.fingerprint)
        idle, passes = 0, passes + 1
    following = _new_step() if step is not None else None
    named = {"step": following} if following is not None else {}
    if not _save_progress(target, total - remaining, total, expect=step, left=remaining, idle=idle, passes=passes, **named):
        return None  # replaced meanwhile: that check goes on
    return NextCheck(CHECK_EVERY_SECONDS, following)


def resume_stalled_builds(stalled_after: float = STALLED_AFTER_SECONDS) -> int:
    """Send again the next check of each asynchronous build last checked more than
    ``stalled_after`` seconds ago (the sweep's part; 0 on a worker start). Returns how many.

    The check was held by a worker that was killed, or lost with the broker: Redis hands such a
    message back only after its visibility timeout, and until then nothing switched. The one sent
    here gets a new name, so the lost one stops if it comes back (:func:`build_step`). A build that
    was switching is left alone for ``SWITCH_STALLED_AFTER_SECONDS`` (fitting its whitening)."""
    if not queue.use_celery():
        return 0
    resumed, now = 0, time.time()
    for target in _builds_in_progress():
        state = target.holder.progress or {}
        if "step" not in state:
            continue  # built here by a command or the admin (its progress says how far), or queued before checks were named
        wait = SWITCH_STALLED_AFTER_SECONDS if state.get("left") == 0 else stalled_after
        late = now - float(state.get("checked_at") or 0)
        if late < wait:
            continue
        step = _new_step()
        rows = ModelVersion.objects.filter(pk=target.holder.pk, progress__step=state["step"])
        if not rows.update(progress={**state, "step": step, "checked_at": now}):
            continue  # a check ran meanwhile: not stalled
        try:
            queue.send(queue.ACTIVATE_VERSION, (_task_id(target), bool(state.get("keep_previous")), step), queue=settings.QUEUE)
        except Exception as exc:  # the broker went away: the next sweep tries again
            logger.warning("Switching to %s: could not send its next check again (%s)", target.name, exc)
            continue
        logger.warning("Switching to %s: its last check was %.0f s ago (its worker killed?); checking again now", target.name, late)
        resumed += 1
    return resumed


def _builds_in_progress() -> list[_Target]:
    targets = [_Target(v, v.fingerprint, v) for v in ModelVersion.objects.filter(status=Status.BUILDING)]
    holder = active_version()
    if holder is not None and (holder.progress or {}).get(PRETRAINED_KEY):
        targets.append(_Target(None, settings_fingerprint(), holder))
    return targets


def _async_target(version_id: int | None) -> _Target | None:

    if version_id is None:
        holder = active_version()
        if holder is None or not (holder.progress or {}).get(PRETRAINED_KEY):
            return None
        return _Target(None, settings_fingerprint(), holder)
    version = ModelVersion.objects.filter(pk=version_id, status=Status.BUILDING).first()
    return _Target(version, version.fingerprint, version) if version is not None else None


def _queue(work, fingerprint: str) -> None:
    for registration, pks in work:
        queue.enqueue(registration.label, registration.image_field, pks, fingerprint=fingerprint)


# -- housekeeping ---------------------------------------------------------------------------------------

class Pruned(dict):
    """What :func:`prune` deleted: the rows per fingerprint (the dict itself, as before), and in
    ``stores`` how many stores of its own the backend removed (FAISS: index files in this machine's
    ``PATH``; pgvector: generation tables), which ``store_names`` names as the backend does
    (:attr:`~visual_search.backends.base.BaseBackend.store_names`)."""

    stores: int = 0
    store_names: tuple[str, str, str] = ("store", "stores", "")

    def stores_removed(self) -> str:
        """E.g. "Removed 2 vector tables of pruned versions from PostgreSQL."; "" when none were."""
        if not self.stores:
            return ""
        one, several, where = self.store_names
        return f"Removed {self.stores} {one if self.stores == 1 else several} of pruned versions{' ' + where if where else ''}."


def prune() -> Pruned:
    """Delete the rows and whitenings of fingerprints no search, build or rollback needs, and what
    the backend stores of them (:meth:`~visual_search.backends.base.BaseBackend.forget_fingerprints`:
    FAISS index files, pgvector tables).

    Keeps the active and building versions' vectors and those :func:`rollback` returns to; a
    retired version pruned can still be activated again (its vectors are then computed anew).
    Stores of a fingerprint whose rows an earlier prune deleted, or another machine's prune, go too:
    they are as unused. Returns the rows deleted per fingerprint, with ``stores``.
    """
    keep = set(indexing_fingerprints())
    target = rollback_fingerprint()
    if target:
        keep.add(target)
    gone = ImageEmbedding.objects.exclude(fingerprint__in=keep)
    counts = Pruned(_count_by_fingerprint(gone))
    if counts:
        gone.delete()
        Whitening.objects.exclude(fingerprint__in=keep).delete()
        _expire()
    backend = get_backend()
    counts.stores, counts.store_names = backend.forget_fingerprints(keep), backend.store_names
    return counts


def _count_by_fingerprint(rows) -> dict[str, int]:
    return dict(rows.values_list("fingerprint").annotate(n=Count("id")).values_list("fingerprint", "n"))


def fingerprint_summary() -> list[dict[str, Any]]:
    """Per fingerprint that has rows (or is in use): which version it is, its role and row counts."""

    current, building = indexing_fingerprints()[0], set(indexing_fingerprints()[1:])
    target = rollback_fingerprint()
    versions = {v.fingerprint: v for v in ModelVersion.objects.exclude(fingerprint="").order_by("created_at")}
    counts: dict[str, dict[str, int]] = {}
    for fp, status, n in ImageEmbedding.objects.values_list("fingerprint", "status").annotate(n=Count("id")).values_list("fingerprint", "status", "n"):
        counts.setdefault(fp, {})[status] = n
    counts.setdefault(current, {})
    table = []
    for fp, by_status in sorted(counts.items(), key=lambda item: (item[0] != current, item[0])):
        version = versions.get(fp)
        if fp == current:
            role = "in use"
        elif fp in building:
            role = "building"
        elif fp == target:
            role = "rollback target"
        elif version is not None or fp == settings_fingerprint():
            role = "kept"
        else:
            role = "stale"
        name = version.label if version is not None else ("pretrained (settings)" if fp == settings_fingerprint() else "former settings")
        table.append({"fingerprint": fp, "version": name, "role": role, **{s: by_status.get(s, 0) for s in ("ready", "pending", "failed")}})
    return table


__all__ = [
    "NotBetter",
    "VersionError",
    "activate",
    "active_version",
    "comparison",
    "indexing_fingerprints",
    "prune",
    "rollback",
    "serving_version",
    "version_fingerprint",
]
