"""Following the ``ImageEmbedding`` rows from process memory: what the NumPy and FAISS backends share.

The rows are the truth. An in-process index asks, at most every ``REFRESH_INTERVAL`` seconds, one
aggregate that an index covers (count and newest ``updated_at`` of the ready rows, and the
whitening's stamp), and fetches only the rows changed since (see :data:`COMMIT_SKEW`, and
:func:`read_back` for a shop with ``USE_TZ = False``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings as django_settings
from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from ..conf import settings
from ..models import ImageEmbedding, Whitening

# Rows are fetched again from a little before the newest timestamp seen: a worker's row that was
# stamped before, but committed after, the last refresh is still picked up.
COMMIT_SKEW = timedelta(seconds=5)


def repeated(moment: datetime | None) -> timedelta:
    """How much earlier a row written after ``moment`` may be stamped: with ``USE_TZ = False``
    (naive local time), at a wall time that occurs twice (the autumn change: 02:00 to 03:00 in
    Europe/Stockholm), the second pass's rows carry times earlier than the first's, by the change
    (an hour). Nothing otherwise (aware times, or a wall time that occurs once)."""
    if moment is None or timezone.is_aware(moment):
        return timedelta(0)
    zone = timezone.get_default_timezone()
    offsets = [moment.replace(tzinfo=zone, fold=fold).utcoffset() for fold in (0, 1)]
    return abs(offsets[0] - offsets[1])


def comparable(stamped: str | None) -> bool:
    """Whether an ``updated_at`` kept as text across restarts (a FAISS file's newest row) compares
    with this process's rows: aware exactly when ``USE_TZ``. One written before the shop switched
    ``USE_TZ`` (Django 5.0 made True its default) does not: its index is built again from the rows."""
    return not stamped or timezone.is_aware(datetime.fromisoformat(stamped)) == bool(django_settings.USE_TZ)


def read_back(newest: datetime | None) -> timedelta:
    """How far before the newest ``updated_at`` seen the rows are read again: :data:`COMMIT_SKEW`,
    and the hour of a wall time that occurs twice (:func:`repeated`), so that a row a worker wrote
    in the repeated hour of a shop on naive local time is not passed over for good."""
    return COMMIT_SKEW + repeated(newest)

# A whitening learned from fewer than WHITENING_MIN_VECTORS vectors (a small catalogue's, with
# customer views) is outgrown once this many times as many vectors are ready: until it is learned
# again no search states a confident match (nor a copy), and one learned from fewer than
# OUTGROWN_PLAIN_BELOW vectors is not searched with at all (plain cosine). Measured on the demo's
# products, fitted at 3 to 40 of them and searched at 1.3 to 27 times as many vectors
# (docs/performance.md, "A catalogue that outgrew its whitening"): learned from 30 vectors or more,
# a whitening ranked about as well as plain cosine or better, but from 4 times 21 to 60 % of its
# confident first results were wrong (28 to 31 % after a fit). Learned from 9 (3 products, 3 images
# each: the chance calibration), it put the right product first for 32 % of the photos at twice
# (plain cosine 72 %) and stated 10 of 25 wrong ones 97 % copies; at 27 times 8 %, and 192 of 296
# wrong copies. From 21, 0.48 at twice (plain cosine 0.64).
OUTGROWN, OUTGROWN_PLAIN_BELOW = 2.0, 30


def ready_rows(result_type_id: int, fingerprint: str) -> QuerySet:
    """The searchable rows of one model and fingerprint."""
    return ImageEmbedding.objects.ready(fingerprint).filter(result_type_id=result_type_id)


def due(checked: float) -> bool:
    """Whether a freshness check last made at ``checked`` (``time.monotonic()``) is due again."""
    interval = float(settings.REFRESH_INTERVAL)
    return interval <= 0 or time.monotonic() - checked >= interval


def outgrown(trained_on: int, ready: int) -> bool:
    """Whether a whitening learned from ``trained_on`` vectors is outgrown now that ``ready`` vectors
    are: learned from a small catalogue (fewer than ``WHITENING_MIN_VECTORS``) that has grown to
    ``OUTGROWN`` times that size since. No search is then confident until it is learned again (the
    sweep, the Celery fit, no longer put off while indexing goes on, or ``visual_search_reindex``)."""
    return 0 < trained_on < int(settings.WHITENING_MIN_VECTORS) and ready >= OUTGROWN * trained_on


def searched_with(whitening: Whitening | None, ready: int) -> Whitening | None:
    """The whitening searches apply with ``ready`` vectors: None (plain cosine) for an outgrown one
    learned from fewer than ``OUTGROWN_PLAIN_BELOW`` vectors, which ranks worse than none."""
    if whitening is not None and whitening.trained_on < OUTGROWN_PLAIN_BELOW and outgrown(whitening.trained_on, ready):
        return None
    return whitening


def stored_whitening(result_type_id: int, fingerprint: str, ready: int) -> tuple[Whitening | None, bool]:
    """The stored whitening of this model as searches apply it with ``ready`` vectors
    (:func:`searched_with`), and whether the catalogue outgrew it (:func:`outgrown`): what every
    in-process index is built with."""
    whitening = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
    stale = whitening is not None and outgrown(whitening.trained_on, ready)
    return searched_with(whitening, ready), stale


@dataclass(frozen=True)
class Snapshot:
    """What the database holds now: the rows, how many and how new, the learned whitening searches
    apply (None: plain cosine, see :func:`searched_with`), and whether the catalogue ``outgrown`` it."""

    rows: QuerySet
    count: int
    newest: datetime | None
    whitening: Whitening | None
    outgrown: bool = False

    @classmethod
    def read(cls, result_type_id: int, fingerprint: str) -> Snapshot:
        rows = ready_rows(result_type_id, fingerprint)
        stats = rows.aggregate(n=Count("id"), newest=Max("updated_at"))
        whitening, stale = stored_whitening(result_type_id, fingerprint, stats["n"])
        return cls(rows, stats["n"], stats["newest"], whitening, outgrown=stale)

    @property
    def settled(self) -> bool:
        """False while the newest ``updated_at`` is a naive wall time that occurs twice
        (:func:`repeated`): a row written in the repeated hour may then change, even in place, with
        neither the count nor the newest time changing: the rows are read again at every check."""
        return not repeated(self.newest)

    @property
    def stamp(self) -> str | None:
        """Identifies the whitening: every transformed vector changes with it."""
        return self.whitening.updated_at.isoformat() if self.whitening is not None else None

    def changed_since(self, newest: datetime | None) -> QuerySet:
        """The rows written since ``newest`` (all of them when None)."""
        return self.rows if newest is None else self.rows.filter(updated_at__gte=newest - read_back(newest))


@dataclass
class ResultCodes:
    """Small integer codes for result ids, so that per-vector arrays hold integers, not strings."""

    result_codes: dict[str, int] = field(default_factory=dict)
    result_ids: list[str] = field(default_factory=list)

    def code(self, result_id: str) -> int:
        code = self.result_codes.get(result_id)
        if code is None:
            code = self.result_codes[result_id] = len(self.result_ids)
            self.result_ids.append(result_id)
        return code
