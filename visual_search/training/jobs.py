"""Training as a job: a :class:`ModelVersion` row that shows its progress and ends trained or not.

:func:`start_training` is what the admin's button and the ``visual_search_train --async`` command
call: it creates the version and runs :func:`run_training` on a Celery worker (the task
``visual_search.train_model``), or in a background thread of this process when Celery is not
configured. Progress is written to ``version.progress`` every couple of seconds, and
``version.cancel_requested`` (the admin's "Cancel training") is read as often.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time

import numpy as np
from django.apps import apps
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections
from django.utils import timezone

from .. import queue
from ..conf import settings
from ..embeddings.spec import network_fingerprint
from ..models import ImageEmbedding, ModelVersion
from ..serving import current_fingerprint
from ..tenants import in_current_schema
from .dataset import NotEnoughData, hold_out, result_registrations, shop_items
from .trainer import Cancelled, TrainingOptions, evaluate_vectors, train

logger = logging.getLogger("visual_search")
STORAGE_DIR = "visual_search/models"


# A training version that wrote no progress for this long has no process left (a web process restarted
# mid-thread, a worker or command killed): the admin's "Cancel" then marks it cancelled at once.
STALLED_AFTER = 15 * 60


def stalled(version: ModelVersion) -> bool:
    """Whether ``version`` says it is training but showed no sign of life for ``STALLED_AFTER`` seconds."""
    at = (version.progress or {}).get("at")
    return version.status == ModelVersion.Status.TRAINING and isinstance(at, (int, float)) and time.time() - at > STALLED_AFTER


# A run that noted progress less than this many seconds ago is alive. Another delivery of its message
# finding it so is a copy: RabbitMQ hands the message to another worker at once when it closes the
# channel of the worker that holds it (a delivery unacknowledged past its consumer_timeout, 30 min by
# default), while that worker's process trains on; Redis after its visibility timeout (an hour).
# Long enough for the longest stretch between progress notes (an evaluation of the held-out images).
ALIVE_WITHIN = 300


def trained_elsewhere(version: ModelVersion) -> bool:
    """Whether a run of ``version``'s training has started and is alive (see ``ALIVE_WITHIN``)."""
    progress = version.progress or {}
    started = progress.get("stage") != "queued" or bool(progress.get("started"))
    at = progress.get("at")
    return version.status == ModelVersion.Status.TRAINING and started and isinstance(at, (int, float)) and time.time() - at < ALIVE_WITHIN


def start_training(model_label: str | None = None, **options) -> ModelVersion:
    """Create a version in ``training`` state and train it in the background; returns it at once."""
    options = {k: v for k, v in options.items() if v is not None}
    version = ModelVersion.objects.create(
        label=f"Adapted {timezone.template_localtime(timezone.now()):%Y-%m-%d %H:%M}",  # naive with USE_TZ = False
        status=ModelVersion.Status.TRAINING,
        config={"model": model_label, "options": options},
        progress={"stage": "queued", "done": 0, "total": 0, "at": time.time()},
    )
    if queue.use_celery():
        queue.send(queue.TRAIN_MODEL, (version.pk,), queue=settings.QUEUE)
    else:
        # In the shop's schema (django-tenants), where the version is: the thread's connection starts in the public one.
        threading.Thread(target=in_current_schema(_in_thread), args=(version.pk,), name=f"visual-search-train-{version.pk}", daemon=True).start()
    return version


def _in_thread(version_id: int) -> None:
    try:
        run_training(version_id)
    finally:
        close_old_connections()


def _result_model(label: str | None):
    if not label:
        return None
    return apps.get_model(label)


def current_vectors(items) -> tuple[list, np.ndarray] | None:
    """The active model's stored vectors of ``items`` (those that have one): what "before" measures."""
    fingerprint = current_fingerprint()
    wanted = {item.key: item for item in items}
    content_types = {key[0] for key in wanted}
    found, vectors = [], []
    rows = ImageEmbedding.objects.ready(fingerprint).filter(content_type_id__in=content_types)
    for ct, object_id, field_name, blob in rows.values_list("content_type_id", "object_id", "field_name", "vector").iterator():
        item = wanted.get((ct, object_id, field_name))
        if item is not None:
            found.append(item)
            vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    return (found, np.vstack(vectors)) if vectors else None


def teacher_vectors(items, stored: tuple[list, np.ndarray] | None = None) -> np.ndarray | None:
    """The active model's stored vectors of ``items``, one row each (NaN where an image has none):
    what distillation aims at. None when no image has one. ``stored``: :func:`current_vectors` of
    these items or more, when already read."""
    if stored is None:
        stored = current_vectors(items)
    if stored is None:
        return None
    found, vectors = stored
    rows = {item.key: n for n, item in enumerate(found)}
    targets = np.full((len(items), vectors.shape[1]), np.nan, dtype=np.float32)
    for n, item in enumerate(items):
        if item.key in rows:
            targets[n] = vectors[rows[item.key]]
    return targets


def before_figures(training, held_out, stored: tuple[list, np.ndarray] | None = None) -> dict:
    """The active model's figures on the same split, from its stored vectors (nothing recomputed);
    ``stored``: :func:`current_vectors` of these items, when already read."""
    if stored is None:
        stored = current_vectors(list(training) + list(held_out))
    if stored is None:
        return {"note": "No stored vectors of the active model: run visual_search_reindex to compare."}
    found, vectors = stored
    held = {item.key for item in held_out}
    q = [n for n, item in enumerate(found) if item.key in held]
    g = [n for n, item in enumerate(found) if item.key not in held]
    # per_query: each held-out image -> its first product was right, to pair with the trained version's (the trainer drops it).
    figures = evaluate_vectors(vectors[q], [found[n] for n in q], vectors[g], [found[n] for n in g], per_query=True)
    if len(q) < len(held_out):
        figures["note"] = f"{len(held_out) - len(q)} held-out images had no stored vector and are not counted."
    return figures


class _Reporter:
    """Throttled writes of progress to the version row, and reads of its cancel flag."""

    def __init__(self, version: ModelVersion, every: float = 2.0, callback=None):
        self.version, self.every, self.callback = version, every, callback
        self._written = self._checked = 0.0
        self._cancel = False

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.callback:
            self.callback(stage, done, total)
        now = time.monotonic()
        if now - self._written >= self.every or done == total:
            self._written = now
            # "at": a sign of life, so a version whose process died can be told apart (stalled()).
            ModelVersion.objects.filter(pk=self.version.pk).update(progress={"stage": stage, "done": done, "total": total, "at": time.time()})

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.every:
            self._checked = now
            self._cancel = ModelVersion.objects.filter(pk=self.version.pk, cancel_requested=True).exists()
        return self._cancel


def run_training(version_id: int, *, progress=None, interrupted=None) -> ModelVersion:
    """Train the ``training`` version ``version_id`` and save it; it ends trained, failed or cancelled.

    ``progress(stage, done, total)`` is called as well as the row being updated (the command's
    progress bars); ``interrupted()`` returning True cancels, as the admin's flag does.
    """
    version = ModelVersion.objects.get(pk=version_id)
    requested = dict(version.config.get("options") or {})
    try:
        options = TrainingOptions.from_settings(**requested)
    except (TypeError, ValueError) as exc:  # options that do not go together: the reason, not a traceback
        return _failed(version, str(exc))
    reporter = _Reporter(version, callback=progress)
    # Alive from now on (a job that waited long in the queue must not look stalled before its first progress).
    # "started": a run has it (trained_elsewhere), until its first progress names the stage.
    ModelVersion.objects.filter(pk=version.pk).update(progress={**(version.progress or {}), "at": time.time(), "started": True})

    def should_stop() -> bool:
        return bool(interrupted and interrupted()) or reporter.should_stop()

    try:
        items = shop_items(_result_model(version.config.get("model")))
        training, held_out = hold_out(items, options.held_out, options.seed)
        stored = current_vectors(list(training) + list(held_out))  # read once: "before", and distillation's targets
        before = before_figures(training, held_out, stored)
        targets = teacher_vectors(training, stored) if options.distil else None
        result = train(training, held_out, options, before=before, targets=targets, progress=reporter.progress, should_stop=should_stop)
        data = _weights_bytes(result.head)
        fingerprint = network_fingerprint(result.config, data)
        name = default_storage.save(f"{STORAGE_DIR}/{fingerprint}.weights.h5", ContentFile(data))
    except Cancelled:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.CANCELLED, progress={"stage": "cancelled"})
        logger.info("Training of %s cancelled; nothing was saved and search is unchanged.", version)
        version.refresh_from_db()
        return version
    except NotEnoughData as exc:
        return _failed(version, str(exc))
    except Exception as exc:
        logger.exception("Training of %s failed", version)
        _failed(version, f"{type(exc).__name__}: {exc}")
        raise
    version.status = ModelVersion.Status.TRAINED
    version.fingerprint = fingerprint
    version.weights_file = name
    version.config = {**version.config, **result.config, "options": result.metrics["options"]}
    version.metrics = result.metrics
    version.trained_at = timezone.now()
    version.progress = {"stage": "trained", "done": 1, "total": 1}
    version.save()
    logger.info("Trained %s: held-out precision@1 %s -> %s", version, result.metrics["before"].get("p_at_1"), result.metrics["after"].get("p_at_1"))
    return version


def _failed(version: ModelVersion, reason: str) -> ModelVersion:
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED, error=reason, progress={"stage": "failed"})
    version.refresh_from_db()
    return version


def _weights_bytes(head) -> bytes:
    """The head's weights as the bytes of a Keras ``.weights.h5`` file."""
    handle, path = tempfile.mkstemp(suffix=".weights.h5")
    os.close(handle)
    try:
        head.save_weights(path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


__all__ = ["run_training", "start_training", "result_registrations"]
