"""Possible duplicate images: the same photo (or a resized, re-compressed, mirrored copy) on two products.

When an image is indexed, :func:`detect` looks for an image of *another* result (two photos of one
product are no problem) with the same bytes (``checksum``) or a vector at least
``DUPLICATE_THRESHOLD`` similar, and records the best on the row (``duplicate_of``,
``duplicate_score``), on both rows of the pair. Only vectors of the current fingerprint are compared,
as stored: raw VGG16 vectors, unit length, by cosine. The search's whitening is for ranking
*different* photos of a product; two copies of one photo are already near-identical before it.

The candidates come from the backend's nearest-neighbour search (:meth:`space
<visual_search.backends.base.BaseBackend.space>`): a few rows per image, whatever the catalogue's
size, then re-scored on their raw vectors. :func:`find_pairs` is the exhaustive scan behind
``manage.py visual_search_duplicates``. Staff dismiss a pair with :func:`dismiss`
(:class:`~visual_search.models.DuplicateDismissal`): it is not flagged again, re-indexed or not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import models

from .backends import get_backend
from .batching import row_chunks
from .conf import settings
from .embeddings.pooling import l2_normalise
from .logs import counted
from .models import DuplicateDismissal, ImageEmbedding
from .serving import current_fingerprint

logger = logging.getLogger("visual_search")

# Rows asked of the backend per image. The backend's space is whitened, where a copy is not always
# its source's nearest: benchmarks duplicates found 149 of 150 sources within the first 16 rows, the
# last at rank 19; a few more rows read back cost next to nothing.
NEIGHBOURS = 32
# Rows that named a re-indexed image as their duplicate are checked again; a bound, so one image
# copied across a thousand products does not make one indexing batch check them all.
RECHECK_LIMIT = 100
# Rows compared at a time by find_pairs: 1,024 x 100k scores are 400 MB of float32.
SCAN_CHUNK = 1024


@dataclass(frozen=True)
class Match:
    """The best possible duplicate of one image: the other row, their similarity, whether same bytes."""

    row_id: int
    score: float
    same_file: bool


@dataclass
class Pair:
    """Two images of two results that look the same (as :func:`find_pairs` lists them)."""

    first: ImageEmbedding
    second: ImageEmbedding
    score: float
    dismissed: bool = False

    @property
    def same_file(self) -> bool:
        return bool(self.first.checksum) and self.first.checksum == self.second.checksum


def threshold() -> float | None:
    """``DUPLICATE_THRESHOLD``: None switches detection off."""
    value = settings.DUPLICATE_THRESHOLD
    return None if value is None else float(value)


def dismissed_keys(row: ImageEmbedding) -> set[str]:
    """The images staff said are no duplicates of ``row``'s (their :meth:`DuplicateDismissal.key`)."""
    return dismissed_of([row])[DuplicateDismissal.key(row)]


def dismissed_of(rows: Sequence[ImageEmbedding]) -> dict[str, set[str]]:
    """:func:`dismissed_keys` of each of ``rows``, by its key, in one query."""
    keys = {DuplicateDismissal.key(row) for row in rows}
    found: dict[str, set[str]] = {key: set() for key in keys}
    for first, second in DuplicateDismissal.objects.filter(models.Q(first__in=keys) | models.Q(second__in=keys)).values_list("first", "second"):
        if first in found:
            found[first].add(second)
        if second in found:
            found[second].add(first)
    return found


def candidates(row: ImageEmbedding) -> list[ImageEmbedding]:
    """Ready rows of other results of ``row``'s model and fingerprint that may show the same image:
    the same bytes, or among the backend's nearest neighbours of its vector."""
    return candidates_of([row])[row.pk]


def candidates_of(rows: Sequence[ImageEmbedding]) -> dict[int, list[ImageEmbedding]]:
    """:func:`candidates` of each of ``rows``, by primary key: one backend space per model, and the
    rows found read in two queries for all of them (a reindex checks a batch at a time)."""
    neighbours: dict[int, list[str]] = {}
    for (type_id, fingerprint), group in _grouped(rows).items():
        with get_backend().space(type_id, fingerprint) as space:
            for row in group:
                found = space.nearest(space.transform(row.array), NEIGHBOURS, space.allow(None, [row.result_id]))
                neighbours[row.pk] = list(found.result_ids)
    # Two queries on one column each, so each uses its index (result_id, checksum) whatever the
    # database's planner thinks of the others; the few rows found are filtered here.
    by_result: dict[str, list[ImageEmbedding]] = {}
    for other in _in_chunks("result_id", {i for ids in neighbours.values() for i in ids}):
        by_result.setdefault(other.result_id, []).append(other)
    by_checksum: dict[str, list[ImageEmbedding]] = {}
    for other in _in_chunks("checksum", {row.checksum for row in rows if row.checksum}):
        by_checksum.setdefault(other.checksum, []).append(other)
    found_of = {}
    for row in rows:
        others = {other.pk: other for result_id in neighbours[row.pk] for other in by_result.get(result_id, ())}
        if row.checksum:
            others.update((other.pk, other) for other in by_checksum.get(row.checksum, ()))
        found_of[row.pk] = [
            other for other in others.values()
            if other.status == ImageEmbedding.Status.READY and other.fingerprint == row.fingerprint
            and other.result_type_id == row.result_type_id and other.result_id != row.result_id and other.vector is not None
        ]
    return found_of


# Values per IN (...) query: SQLite before 3.32 allows 999 parameters in all.
IN_CHUNK = 900


def _in_chunks(column: str, values: set[str]) -> Iterable[ImageEmbedding]:
    """The rows whose ``column`` is one of ``values``, in queries of at most ``IN_CHUNK`` values."""
    values = sorted(values)
    for start in range(0, len(values), IN_CHUNK):
        yield from ImageEmbedding.objects.filter(**{f"{column}__in": values[start : start + IN_CHUNK]})


def _grouped(rows: Sequence[ImageEmbedding]) -> dict[tuple[int, str], list[ImageEmbedding]]:
    groups: dict[tuple[int, str], list[ImageEmbedding]] = {}
    for row in rows:
        groups.setdefault((row.result_type_id, row.fingerprint), []).append(row)
    return groups


def best_match(row: ImageEmbedding, limit: float) -> Match | None:
    """``row``'s most similar image of another result, if the same file or at least ``limit`` similar."""
    return _best(row, candidates(row), dismissed_keys(row), limit)


def _best(row: ImageEmbedding, rows: list[ImageEmbedding], dismissed: set[str], limit: float) -> Match | None:
    rows = [other for other in rows if DuplicateDismissal.key(other) not in dismissed]
    if not rows:
        return None
    scores = l2_normalise(np.stack([other.array for other in rows])) @ l2_normalise(row.array)
    same = np.array([bool(row.checksum) and other.checksum == row.checksum for other in rows])
    # The same file wins whatever the score (a few pixels of float noise), and of several copies of
    # it the first indexed (the original, whichever order the database returned them in); else the
    # most similar.
    best = min(range(len(rows)), key=lambda i: (not same[i], rows[i].pk if same[i] else 0, -scores[i], rows[i].pk))
    if not same[best] and scores[best] < limit:
        return None
    return Match(rows[best].pk, float(min(scores[best], 1.0)), bool(same[best]))


def detect(rows: Iterable[ImageEmbedding]) -> int:
    """Record (or clear) the possible duplicate of each ready row of the current fingerprint.

    The other image of a pair is flagged too, unless it already names a closer one. Rows that named
    one of ``rows`` are checked again: its image may have changed. Returns how many rows are flagged.
    The candidates and dismissals of all the rows are read first (a few queries for the batch);
    the flags are then written row by row, in order, as each row's outcome may change the next's.
    """
    limit = threshold()
    if limit is None:
        return 0
    fingerprint = current_fingerprint()
    rows = [r for r in rows if r.fingerprint == fingerprint and r.status == ImageEmbedding.Status.READY and r.vector is not None]
    if not rows:
        return 0
    ids = [r.pk for r in rows]
    rows += list(ImageEmbedding.objects.ready(fingerprint).filter(duplicate_of__in=ids).exclude(pk__in=ids)[:RECHECK_LIMIT])
    found, dismissed = candidates_of(rows), dismissed_of(rows)
    flagged = 0
    touched: set[int] = set()  # rows flagged here as the other image of a pair
    for row in rows:
        match = _best(row, found[row.pk], dismissed[DuplicateDismissal.key(row)], limit)
        if match is not None or row.duplicate_of_id is not None or row.pk in touched:
            _record(row.pk, match)  # a row read with no flag, and given none here, is left alone
        if match is not None:
            flagged += 1
            touched.add(match.row_id)
            # The other side, unless it has a closer duplicate of its own.
            ImageEmbedding.objects.filter(pk=match.row_id).filter(
                models.Q(duplicate_of__isnull=True) | models.Q(duplicate_score__lt=match.score) | models.Q(duplicate_of=row.pk)
            ).update(duplicate_of=row.pk, duplicate_score=match.score)
    return flagged


def _record(row_id: int, match: Match | None) -> None:
    # update(), not save(): updated_at stays, so no backend sees a changed vector.
    ImageEmbedding.objects.filter(pk=row_id).update(
        duplicate_of=match.row_id if match else None, duplicate_score=match.score if match else None
    )


def detect_quietly(rows: Sequence[ImageEmbedding]) -> None:
    """:func:`detect`, logging instead of raising: indexing never fails for a duplicate check."""
    try:
        detect(rows)
    except Exception:
        logger.exception("Duplicate image check failed for %s; they are indexed all the same.", counted(len(rows), "image"))


def dismiss(row: ImageEmbedding, other: ImageEmbedding, user=None) -> None:
    """Staff say ``row`` and ``other`` are different products' own images: never flag them again."""
    first, second = DuplicateDismissal.pair(row, other)
    DuplicateDismissal.objects.get_or_create(first=first, second=second, defaults={"dismissed_by": user})
    pair = models.Q(pk=row.pk, duplicate_of=other.pk) | models.Q(pk=other.pk, duplicate_of=row.pk)
    ImageEmbedding.objects.filter(pair).update(duplicate_of=None, duplicate_score=None)
    # Either may look like a third product's image too.
    detect_quietly([r for r in ImageEmbedding.objects.filter(pk__in=[row.pk, other.pk])])


def flagged(queryset: models.QuerySet | None = None) -> models.QuerySet:
    """Rows of the current fingerprint flagged as a possible duplicate of a ready row."""
    queryset = ImageEmbedding.objects.all() if queryset is None else queryset
    ready = ImageEmbedding.Status.READY
    return queryset.filter(
        fingerprint=current_fingerprint(), status=ready, duplicate_of__isnull=False, duplicate_of__status=ready
    )


# -- the exhaustive listing (manage.py visual_search_duplicates) ------------------------------------


def find_pairs(
    limit: float | None = None,
    *,
    result_model: type[models.Model] | None = None,
    include_dismissed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Pair]:
    """Every pair of images of two results that look the same, best first: one pair per two results.

    Compares every ready vector of the current fingerprint with every other of its model (a NumPy
    scan in chunks of :data:`SCAN_CHUNK`), at ``limit`` (default ``DUPLICATE_THRESHOLD``, or 1.0
    when that is None: same files only). ``progress(done, total)`` after each chunk.
    """
    limit = threshold() if limit is None else limit
    limit = 1.0 if limit is None else limit
    rows = ImageEmbedding.objects.ready(current_fingerprint())
    if result_model is not None:
        rows = rows.filter(result_type=ContentType.objects.get_for_model(result_model))
    pairs: list[Pair] = []
    types = sorted(set(rows.values_list("result_type_id", flat=True)))
    total = rows.count()
    done = 0
    for result_type_id in types:
        pairs += _scan(rows.filter(result_type_id=result_type_id), limit, lambda n, done=done: progress and progress(done + n, total))
        done += rows.filter(result_type_id=result_type_id).count()
    dismissed = set(DuplicateDismissal.objects.values_list("first", "second"))
    for pair in pairs:
        pair.dismissed = DuplicateDismissal.pair(pair.first, pair.second) in dismissed
    return sorted((p for p in pairs if include_dismissed or not p.dismissed), key=lambda p: (-p.same_file, -p.score))


def _scan(rows: models.QuerySet, limit: float, progress: Callable[[int], object]) -> list[Pair]:
    ids, results, checksums, vectors = [], [], [], []
    for chunk in row_chunks(rows.values_list("id", "result_id", "checksum", "vector"), 2000):
        for row_id, result_id, checksum, blob in chunk:
            ids.append(row_id)
            results.append(result_id)
            checksums.append(checksum)
            vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    if len(ids) < 2:
        progress(len(ids))
        return []
    matrix = l2_normalise(np.vstack(vectors))
    _, codes = np.unique(np.asarray(results, dtype=object).astype(str), return_inverse=True)
    _, files = np.unique(np.asarray(checksums, dtype=object).astype(str), return_inverse=True)
    files = np.where(np.asarray(checksums, dtype=object) == "", -1 - np.arange(len(ids)), files)  # no checksum: no match
    best: dict[tuple[int, int], tuple[bool, float, int, int]] = {}
    for start in range(0, len(ids), SCAN_CHUNK):
        stop = min(start + SCAN_CHUNK, len(ids))
        scores = matrix[start:stop] @ matrix.T
        same = files[start:stop, None] == files[None, :]
        hits = (scores >= limit) | same
        hits &= codes[start:stop, None] != codes[None, :]  # another result
        hits &= np.arange(start, stop)[:, None] < np.arange(len(ids))[None, :]  # each pair once
        for i, j in zip(*np.nonzero(hits)):
            i, j = int(i) + start, int(j)
            key = (min(codes[i], codes[j]), max(codes[i], codes[j]))
            candidate = (bool(same[i - start, j]), float(min(scores[i - start, j], 1.0)), i, j)
            if key not in best or candidate[:2] > best[key][:2]:
                best[key] = candidate
        progress(stop)
    wanted = {ids[n] for _, _, i, j in best.values() for n in (i, j)}
    loaded = ImageEmbedding.objects.filter(pk__in=wanted).select_related("content_type", "result_type").defer("vector").in_bulk()
    return [Pair(loaded[ids[i]], loaded[ids[j]], score) for _, score, i, j in best.values()]


def result_objects(rows: Iterable[ImageEmbedding]) -> dict[int, models.Model | None]:
    """``{row.pk: object}`` of :func:`result_object` for many rows: one query per result model (a
    list page of flagged images asked once per row)."""
    by_type: dict[int, list[ImageEmbedding]] = {}
    for row in rows:
        by_type.setdefault(row.result_type_id, []).append(row)
    found: dict[int, models.Model | None] = {}
    for same_type in by_type.values():
        model = same_type[0].result_type.model_class()
        objects = {}
        if model is not None:
            objects = {str(obj.pk): obj for obj in model._default_manager.filter(pk__in={r.result_id for r in same_type})}
        found.update((row.pk, objects.get(row.result_id)) for row in same_type)
    return found


def result_object(row: ImageEmbedding) -> models.Model | None:
    """The object a row stands for (the product), or None when it is gone: the one a list page
    fetched for all its rows (``row.result_object``, by :func:`result_objects`) where it did."""
    if hasattr(row, "result_object"):
        return row.result_object
    return result_objects([row])[row.pk]


def shown_similarity(score: float | None) -> float:
    """A duplicate's similarity as staff read it (three decimals), rounded down: two different photos
    are flagged from DUPLICATE_THRESHOLD (0.997) and all read "1.00" at two decimals; none reads
    1.000 unless it is. Within float32's rounding of it (1e-6): the same file's vectors, identical,
    scored 0.99999994 and read "0.999"."""
    return math.floor((score or 0.0) * 1000 + 1e-3) / 1000
