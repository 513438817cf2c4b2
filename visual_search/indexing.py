"""Compute and store embeddings for registered objects: the work behind every task and command.

Everything here takes ids and reads the rows again, so it is idempotent: running it twice, or
after a redelivered task, leaves the same rows. A batch never fails as a whole for one bad image.

An image has one row per model version (fingerprint). Work is done for the *indexing
fingerprints* (:func:`visual_search.serving.indexing_fingerprints`): the active version's and
any being built. Rows of other versions are kept while they describe the image as it is (a
rollback reuses them) and deleted once it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import models, router, transaction
from django.utils import timezone

from . import duplicates, reasons, serving, thumbnails
from .backends import get_backend
from .batching import chunked
from .embeddings import images
from .exceptions import InvalidImage
from .logs import counted
from .models import ImageEmbedding
from .registry import Registration
from .serving import indexing_fingerprints, kept_fingerprints
from .tenants import in_current_schema, tenant_key

logger = logging.getLogger("visual_search")
Status = ImageEmbedding.Status


@dataclass
class IndexReport:
    """What one call of :func:`index_objects` did, by object id."""

    embedded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    # Objects whose image could not be read for a reason that may pass (storage down): retry them.
    retry: list[Any] = field(default_factory=list)
    # Of ``embedded``, those whose vector came from a file of vectors (``known``), not the network.
    taken: list[str] = field(default_factory=list)

    def merge(self, other: IndexReport) -> IndexReport:
        self.embedded += other.embedded
        self.taken += other.taken
        self.unchanged += other.unchanged
        self.failed.update(other.failed)
        self.removed += other.removed
        self.retry += other.retry
        return self

    def as_dict(self) -> dict:
        return {
            "embedded": len(self.embedded),
            "unchanged": len(self.unchanged),
            "failed": len(self.failed),
            "removed": len(self.removed),
            "retry": len(self.retry),
        }


def image_name(obj, registration: Registration) -> str:
    file = getattr(obj, registration.image_field)
    return file.name if file else ""


def row_key(registration: Registration, obj) -> dict:
    return {
        "content_type": ContentType.objects.get_for_model(registration.model),
        "object_id": str(obj.pk),
        "field_name": registration.image_field,
    }


# The longest id (of an object, of its result) an ImageEmbedding row holds; ``check`` warns of
# registered models whose keys may be longer (visual_search.W004).
ID_LENGTH = ImageEmbedding._meta.get_field("object_id").max_length


def too_long_id(registration: Registration, obj) -> str:
    """Why ``obj`` cannot be indexed for the length of its key (or its result's), or ""."""
    for whose, pk in (("its key", obj.pk), ("its result's key", registration.result_pk(obj))):
        if pk is not None and len(str(pk)) > ID_LENGTH:
            return (
                f"{registration.label} {str(obj.pk)[:40]!r}... is not indexed: {whose} has {len(str(pk))} characters, "
                f"and visual search stores ids of at most {ID_LENGTH}."
            )
    return ""


def mark_pending(registration: Registration, obj, name: str, *, new_file: bool = False) -> bool:
    """Record that ``obj``'s image ``name`` must be (re)computed, in the caller's transaction.

    One pending row per indexing fingerprint (the active version, and any being built). Returns
    False when every one already holds a vector of that very file: nothing to do, unless
    ``new_file`` (a file just stored under the name the row has: a storage that overwrites). A pending row is
    not searched, so a product never matches on a photo it no longer shows; rows of other versions
    that describe another file are deleted (a rollback will compute the image again).
    """
    result_pk = registration.result_pk(obj)
    if result_pk is None:
        return False
    if why := too_long_id(registration, obj):  # a row could not hold it: the shop's save must not fail
        logger.error(why)
        return False
    fingerprints = indexing_fingerprints()
    # The primary's rows: a read replica's may be older than the vector it decides to keep.
    rows = ImageEmbedding.objects.on_primary().filter(**row_key(registration, obj))
    rows = rows.only("fingerprint", "status", "source_name", "result_id")
    existing = {row.fingerprint: row for row in rows}
    outdated = [row.pk for fp, row in existing.items() if fp not in fingerprints and (new_file or row.source_name != name)]
    touched = list(outdated)
    for fingerprint in fingerprints:
        row = existing.get(fingerprint)
        if not new_file and row is not None and row.status != Status.PENDING and row.source_name == name and row.result_id == str(result_pk):
            continue
        defaults = {
            "result_type": ContentType.objects.get_for_model(registration.result_model),
            "result_id": str(result_pk),
            "status": Status.PENDING,
            "error": "",
        }
        if row is None or row.status != Status.PENDING:  # another image (or a failed one saved again): tried afresh
            defaults["embed_attempts"] = 0
        row, _ = ImageEmbedding.objects.update_or_create(**row_key(registration, obj), fingerprint=fingerprint, defaults=defaults)
        touched.append(row.pk)
    if outdated:
        ImageEmbedding.objects.filter(pk__in=outdated).delete()
    if touched:
        transaction.on_commit(lambda: remove_from_backend(touched), using=router.db_for_write(ImageEmbedding))  # no longer searchable
    return len(touched) > len(outdated)


def mark_queued(registration: Registration, pks: Sequence[Any]) -> int:
    """Pending rows for those of ``pks`` with no row of an indexing fingerprint yet (never indexed,
    or only by another model), as work for them is queued: ``visual_search_status`` and the admin
    count them pending, not missing or stale, and the sweep queues them again only once they have
    waited ``SWEEP_AFTER_SECONDS`` (a lost task), not at each of its runs. An existing row is left
    as it is: a ready vector stays searchable until its recomputation replaces it. Returns how many
    rows were made."""
    fingerprints = indexing_fingerprints()
    content_type = ContentType.objects.get_for_model(registration.model)
    keys = {str(pk) for pk in pks}
    have = set(
        ImageEmbedding.objects.of_field(registration.model, registration.image_field)
        .filter(object_id__in=keys, fingerprint__in=fingerprints)
        .values_list("object_id", "fingerprint")
    )
    if len(have) == len(keys) * len(fingerprints):
        return 0
    field = registration.image_field
    objects = (
        registration.searchable().filter(pk__in=[pk for pk in pks])
        .exclude(**{f"{field}__isnull": True}).exclude(**{field: ""})
        .values_list("pk", registration.result_pk_lookup())
    )
    result_type = ContentType.objects.get_for_model(registration.result_model)
    rows = [
        ImageEmbedding(
            content_type=content_type, object_id=str(pk), field_name=field, fingerprint=fingerprint,
            result_type=result_type, result_id=str(result_pk), status=Status.PENDING,
        )
        for pk, result_pk in objects if result_pk is not None and max(len(str(pk)), len(str(result_pk))) <= ID_LENGTH
        for fingerprint in fingerprints if (str(pk), fingerprint) not in have
    ]
    # A worker may make the same row meanwhile: its row wins.
    ImageEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def remove_from_backend(ids: list[int]) -> None:
    """Take rows' vectors out of the search backend after the commit that changed them. A backend
    that fails (pgvector without its extension, its database down) is logged, never raised: the
    shop's save has committed (raising from on_commit made it a 500 in the admin all the same), the
    rows are right, and the sweep drops the vectors of rows no longer ready from the backend."""
    try:
        get_backend().remove(ids)
    except Exception:  # noqa: BLE001 - any backend's failure; the traceback goes to the log
        logger.exception(
            "Visual search: the search backend could not drop %s of images just changed or deleted; "
            "the sweep (or `manage.py visual_search_rebuild_index`) drops them once the backend works", counted(len(ids), "vector")
        )


def remove_object(registration: Registration, pk: Any) -> list[int]:
    """Delete the rows (of every version) of one object's image field; returns the ids removed."""
    rows = ImageEmbedding.objects.on_primary().of_field(registration.model, registration.image_field)
    rows = rows.filter(object_id=str(pk))
    ids = list(rows.values_list("id", flat=True))  # the primary's: a replica may lack the newest rows
    if ids:
        rows.delete()
        transaction.on_commit(lambda: remove_from_backend(ids), using=router.db_for_write(ImageEmbedding))
    return ids


# The words ``visual_search_status`` finds missing files by, in the reason of every failed row.
MISSING_FROM_STORAGE = "is missing from storage."


def missing_reason(name: str) -> str:
    """The failure reason of an image whose file is not in its storage: for staff, with what to do.
    English, as every stored reason: :func:`~visual_search.reasons.describe_failure` translates it."""
    return reasons.MISSING % {"name": repr(name)}


def image_reader(obj, registration: Registration):
    """A function that reads the bytes of ``obj``'s image from its storage (when it is called), in
    this shop's schema (django-tenants) from the extractor's or the trainer's decode thread too."""
    return in_current_schema(lambda: read_or_missing(obj, registration))


def read_or_missing(obj, registration: Registration) -> bytes:
    """``registration.read_image(obj)``; a read error of a file the storage says it has not is
    :class:`FileNotFoundError`, whatever the storage raised.

    Storages may say "no such file" in their own words: older releases of django-storages' S3
    backend raise botocore's ``ClientError`` (404), a shop's own storage its SDK's error. Taken for
    an error that may pass, a missing file was retried by every task and every sweep, for ever, and
    staff never read that it is missing. Errors of a file that exists (or whose storage cannot answer
    now) stay what they were: retried.
    """
    try:
        return registration.read_image(obj)
    except (InvalidImage, FileNotFoundError, *images.PASS_THROUGH):
        raise
    except Exception as exc:
        file = getattr(obj, registration.image_field)
        try:
            missing = not file.storage.exists(file.name)
        except Exception:  # noqa: BLE001 - the storage cannot answer either: the read's error stands
            missing = False
        if missing:
            raise FileNotFoundError(f"{file.name} is not in the storage ({type(exc).__name__}: {exc})") from exc
        raise


def index_objects(
    registration: Registration,
    pks: Sequence[Any],
    *,
    force: bool = False,
    batch_size: int | None = None,
    fingerprints: Sequence[str] | None = None,
    known: Callable[[str, str], np.ndarray | None] | None = None,
) -> IndexReport:
    """Embed the images of ``registration.model`` objects ``pks`` and store the vectors.

    For each of ``fingerprints`` (default: the indexing fingerprints, i.e. the active version and
    any being built; a version's fingerprint computes just that version). Unchanged images (same
    bytes, a row of that fingerprint) are not recomputed unless ``force``. Objects that no longer
    exist, have no image, or take no part in search (not in ``registration.searchable()``: a
    variant the shop hides) lose their rows. Bad images end ``failed`` with a reason. The report
    counts each image once per fingerprint. ``known(fingerprint, checksum)`` may give a vector
    computed elsewhere for those bytes (:class:`~visual_search.vector_files.VectorFile`): stored as
    if computed here, without the network's pass.
    """
    report = IndexReport()
    pks = list(pks)
    # From the primary: a task runs as the save commits, when a read replica may not have the object
    # yet (or shows its old image), and what is read here decides to compute, or to delete the rows.
    queryset = registration.searchable_on_primary().filter(pk__in=pks)
    if registration.result and "__" not in registration.result:
        queryset = queryset.select_related(registration.result)
    objects = {str(obj.pk): obj for obj in queryset}
    for pk in pks:
        if str(pk) not in objects or not image_name(objects[str(pk)], registration):
            if remove_object(registration, pk):
                report.removed.append(str(pk))
            objects.pop(str(pk), None)
    for pk, obj in list(objects.items()):
        if why := too_long_id(registration, obj):  # its row would fail the whole batch's transaction
            logger.error(why)
            report.failed[pk] = why
            del objects[pk]
    if not objects:
        return report
    fingerprints = list(fingerprints) if fingerprints is not None else indexing_fingerprints()
    indexing = set(fingerprints) | set(indexing_fingerprints())
    keep = kept_fingerprints() | indexing
    for fingerprint in fingerprints:
        report.merge(_index_version(registration, objects, fingerprint, force, batch_size, (indexing, keep), known))
    report.retry = list(dict.fromkeys(report.retry))
    return report


def _index_version(registration: Registration, objects: dict, fingerprint: str, force: bool, batch_size, fingerprints, known=None) -> IndexReport:
    report = IndexReport()
    existing = {
        row.object_id: row
        for row in ImageEmbedding.objects.on_primary()
        .of_field(registration.model, registration.image_field)
        .filter(object_id__in=list(objects), fingerprint=fingerprint)
        .defer("vector")
    }

    def unchanged(pk: str, checksum: str) -> bool:
        row = existing.get(pk)
        return (
            not force
            and row is not None
            and row.status == Status.READY
            and row.fingerprint == fingerprint
            and row.checksum == checksum
        )

    extractor = serving.get_extractor(fingerprint)
    # Each embedded image's thumbnail, from the bytes read for it: no page downloads the original.
    # The cache is asked once what the images have: one made for the same bytes is not made again.
    files = {pk: _file(obj, registration) for pk, obj in objects.items()}
    with thumbnails.Writer(files.values()) as writer:
        items = ((pk, writer.reading(pk, *files[pk], image_reader(obj, registration))) for pk, obj in objects.items())
        embedded = extractor.embed_many(
            items, batch_size, skip=unchanged, embedding=writer.embedding,
            known=(lambda checksum: known(fingerprint, checksum)) if known is not None else None,
        )
        for outcomes in chunked(embedded, batch_size or 32):
            _store(registration, objects, existing, outcomes, fingerprint, extractor.dimensions, report, fingerprints)
    return report


def _file(obj, registration: Registration):
    """The storage and name of ``obj``'s image."""
    file = getattr(obj, registration.image_field)
    return file.storage, file.name


def _store(registration, objects, existing, outcomes, fingerprint, dimensions, report: IndexReport, fingerprints) -> None:
    """Write one batch's outcomes, each row whole in one statement: never half-indexed."""
    result_type = ContentType.objects.get_for_model(registration.result_model)
    keys = [o.key for o in outcomes]
    using = router.db_for_write(ImageEmbedding)  # the rows' database, which a shop may route elsewhere
    ready, checksums = [], {}
    with transaction.atomic(using=using):
        # The image may have changed while we computed: keep only vectors of the image still there.
        # Read the objects' images only once this version's rows are locked: a change that commits
        # after the read must then wait to mark its row pending, so it is never overwritten with a
        # vector of the image it replaced (on SQLite the IMMEDIATE transaction does the same).
        list(
            ImageEmbedding.objects.select_for_update()
            .of_field(registration.model, registration.image_field)
            .filter(object_id__in=keys, fingerprint=fingerprint)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Only images still searchable: one hidden meanwhile (its rows deleted) is not put back.
        current = {
            str(pk): name
            for pk, name in registration.searchable_on_primary()
            .filter(pk__in=keys)
            .values_list("pk", registration.image_field)
        }
        for outcome in outcomes:
            pk, obj = outcome.key, objects[outcome.key]
            name = image_name(obj, registration)
            if current.get(pk) != name:
                logger.info("%s %s: image changed or left search while embedding; not stored", registration.label, pk)
                continue
            if outcome.skipped:
                checksums[pk] = outcome.checksum
                report.unchanged.append(pk)
                row = existing[pk]
                result_id = str(registration.result_pk(obj))
                if row.result_id != result_id:
                    # Moved to another object (a deeper relation changed, or while indexing was
                    # paused): a newer updated_at makes every process's index read the row again.
                    ImageEmbedding.objects.filter(pk=row.pk).update(source_name=name, result_id=result_id, updated_at=timezone.now())
                    if row.status == Status.READY:
                        ready.append(ImageEmbedding.objects.get(pk=row.pk))
                elif row.source_name != name:
                    ImageEmbedding.objects.filter(pk=row.pk).update(source_name=name)
                continue
            values = {"result_type": result_type, "result_id": str(registration.result_pk(obj)), "source_name": name, "embed_attempts": 0}
            if outcome.vector is not None:
                values.update(
                    status=Status.READY,
                    error="",
                    checksum=outcome.checksum,
                    dimensions=dimensions,
                    vector=outcome.vector.astype("float32").tobytes(),
                )
                report.embedded.append(pk)
                if outcome.known:
                    report.taken.append(pk)
            elif isinstance(outcome.error, (InvalidImage, FileNotFoundError)):
                reason = outcome.error.for_staff if isinstance(outcome.error, InvalidImage) else str(outcome.error)
                if isinstance(outcome.error, FileNotFoundError):
                    reason = missing_reason(name)
                values.update(status=Status.FAILED, error=reason, checksum=outcome.checksum or "", vector=None, dimensions=0)
                report.failed[pk] = reason
                logger.warning("%s %s: image not indexed: %s", registration.label, pk, reason)
            else:
                logger.warning("%s %s: could not read the image, will retry: %r", registration.label, pk, outcome.error)
                report.retry.append(pk)
                continue
            row, _ = ImageEmbedding.objects.update_or_create(**row_key(registration, obj), fingerprint=fingerprint, defaults=values)
            checksums[pk] = values["checksum"]
            if row.status == Status.READY:
                ready.append(row)
        gone = _outdated_rows(registration, checksums, *fingerprints)
    # Even with nothing ready: failed rows left the searchable set, and the backend must know.
    transaction.on_commit(lambda: get_backend().add(ready), using=using)
    if ready:
        # Once the backend has them: another product's image that looks the same (never raises).
        transaction.on_commit(lambda: duplicates.detect_quietly(ready), using=using)
    if gone:
        transaction.on_commit(lambda: remove_from_backend(gone), using=using)


def _outdated_rows(registration: Registration, checksums: dict[str, str | None], indexing: set[str], keep: set[str]) -> list[int]:
    """Delete the rows of other versions that no longer describe these images; returns their ids.

    A row of a version nobody indexes for is kept while its checksum is the image's (a rollback
    reuses it) and deleted when the image changed. Rows of a fingerprint no version has (the
    settings changed) are deleted once the image has a current vector: they were *stale*.
    """
    if not checksums:
        return []
    rows = (
        ImageEmbedding.objects.of_field(registration.model, registration.image_field)
        .filter(object_id__in=list(checksums))
        .exclude(fingerprint__in=indexing)
    )
    gone = [
        row_id
        for row_id, object_id, fp, checksum in rows.values_list("id", "object_id", "fingerprint", "checksum")
        if fp not in keep or (checksums[object_id] and checksum != checksums[object_id])
    ]
    if gone:
        ImageEmbedding.objects.filter(pk__in=gone).delete()
    return gone


# Attempts: a task that starts computing images counts one attempt on their rows, and takes it back
# when it ends with them (stored, failed, or left for a retry). What is left counted was never
# finished: the image alone passed Celery's soft time limit, or the worker process was killed (the
# hard time limit, OOM). Those go on their own next time; at MAX_EMBED_ATTEMPTS the row is failed.


@dataclass
class Attempt:
    """What :func:`begin_attempt` decided for a task's ids."""

    here: list[Any]  # to compute in this task (each counted one attempt)
    alone: list[Any]  # unfinished before: each goes in a task of its own
    given_up: list[str]  # failed now, at the limit
    counted: list[int] = field(default_factory=list)  # the rows counted, for end_attempt
    held: str = ""  # the cache key under which they are noted (hold_attempt), or "" where not noted


def gave_up_reason(attempts: int) -> str:
    """The failure reason of an image given up after ``attempts`` unfinished tasks: for staff (English,
    translated where shown)."""
    return reasons.GAVE_UP % {"count": attempts}


def begin_attempt(registration: Registration, pks: Sequence[Any], fingerprints: Sequence[str] | None, limit: int) -> Attempt:
    """Before a task computes ``pks``: fail the pending rows at ``limit`` unfinished attempts, set
    aside (when there are several ids) those with any, and count one attempt on the rest's rows."""
    fingerprints = list(fingerprints) if fingerprints is not None else indexing_fingerprints()
    rows = list(  # the primary's counts: the last task's, and rows just made pending, a replica may lack
        ImageEmbedding.objects.on_primary().of_field(registration.model, registration.image_field)
        .filter(object_id__in=[str(pk) for pk in pks], fingerprint__in=fingerprints)
        .values_list("id", "object_id", "status", "embed_attempts")
    )
    tried = {}
    for row_id, object_id, status, attempts in rows:
        if attempts > 0:
            tried.setdefault(object_id, []).append((row_id, status, attempts))
    given_up, done = [], set()
    for object_id, found in tried.items():
        if max(attempts for _, _, attempts in found) < limit:
            continue
        done.add(object_id)
        for row_id, status, attempts in found:
            if status == Status.PENDING:
                ImageEmbedding.objects.filter(pk=row_id, status=Status.PENDING).update(
                    status=Status.FAILED, error=gave_up_reason(attempts), vector=None, dimensions=0, updated_at=timezone.now()
                )
                given_up.append(object_id)
                logger.error("%s %s: given up after %s unfinished attempts (time limit, or worker killed)", registration.label, object_id, attempts)
            else:  # a ready (or failed) image recomputed by force: it keeps what it has
                ImageEmbedding.objects.filter(pk=row_id).update(embed_attempts=0)
                logger.error("%s %s: not recomputed after %s unfinished attempts; it keeps its row", registration.label, object_id, attempts)
    remaining = [pk for pk in pks if str(pk) not in done]
    alone = [pk for pk in remaining if str(pk) in tried] if len(remaining) > 1 else []
    here = [pk for pk in remaining if pk not in alone]
    keys = {str(pk) for pk in here}
    counted = [row_id for row_id, object_id, _, _ in rows if object_id in keys]
    if counted:
        counted_rows = ImageEmbedding.objects.filter(pk__in=counted)
        counted_rows.filter(status=Status.PENDING).update(embed_attempts=models.F("embed_attempts") + 1, updated_at=timezone.now())
        counted_rows.exclude(status=Status.PENDING).update(embed_attempts=models.F("embed_attempts") + 1)
    return Attempt(here=here, alone=alone, given_up=list(dict.fromkeys(given_up)), counted=counted)


def end_attempt(attempt: Attempt) -> None:
    """The task ended with its images (whatever became of them): take back the attempts it counted,
    unless a worker shutting down took them back already (:func:`take_back`)."""
    if attempt.held:
        try:
            if not cache.delete(attempt.held):
                return
        except Exception:  # the cache is down: the attempts are this task's to take back
            logger.debug("No cache to tell whether a shutdown took this task's attempts back", exc_info=True)
    _uncount(attempt.counted)


def _uncount(row_ids: list[int]) -> None:
    if row_ids:
        ImageEmbedding.objects.filter(pk__in=row_ids, embed_attempts__gt=0).update(embed_attempts=models.F("embed_attempts") - 1)


# Noted for longer than any task runs; a key left by a killed task only expires.
ATTEMPT_KEY = "visual_search:attempt:{}"
ATTEMPT_NOTED_FOR = 24 * 3600


def hold_attempt(attempt: Attempt, holder: str) -> None:
    """Note in Django's cache the rows ``attempt`` counted, under ``holder`` (a Celery task id), so
    that the worker's main process can take them back if it is stopped while the task runs."""
    if not attempt.counted or not holder:
        return
    key = tenant_key(ATTEMPT_KEY.format(holder))
    try:
        cache.set(key, attempt.counted, timeout=ATTEMPT_NOTED_FOR)
        if cache.get(key) is not None:  # not a DummyCache: whoever deletes the key takes the attempts back
            attempt.held = key
    except Exception:
        logger.debug("No cache to note this task's attempts", exc_info=True)


def take_back(holder: str) -> int:
    """A worker shutting down on purpose while task ``holder`` computes: take back the attempts it
    counted (once: the task, if it ends after all, finds them taken). Returns how many rows."""
    key = tenant_key(ATTEMPT_KEY.format(holder))
    row_ids = cache.get(key)
    if not row_ids or not cache.delete(key):
        return 0
    _uncount(row_ids)
    return len(row_ids)


def reset_attempts(registration: Registration, pks: Sequence[Any]) -> int:
    """A manual reindex: the images' unfinished attempts start from 0 again."""
    return (
        ImageEmbedding.objects.of_field(registration.model, registration.image_field)
        .filter(object_id__in=[str(pk) for pk in pks], embed_attempts__gt=0)
        .update(embed_attempts=0)
    )
