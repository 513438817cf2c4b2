"""Following the ``ImageEmbedding`` rows from process memory: what the NumPy and FAISS backends share.

The rows are the truth. An in-process index asks, at most every ``REFRESH_INTERVAL`` seconds, one
aggregate that an index covers (count and newest ``updated_at`` of the ready rows, and the
whitening's stamp), and fetches only the rows changed since (see :data:`COMMIT_SKEW`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, QuerySet

from ..conf import settings
from ..models import ImageEmbedding, Whitening

# Rows are fetched again from a little before the newest timestamp seen: a worker's row that was
# stamped before, but committed after, the last refresh is still picked up.
COMMIT_SKEW = timedelta(seconds=5)


def ready_rows(result_type_id: int, fingerprint: str) -> QuerySet:
    """The searchable rows of one model and fingerprint."""
    return ImageEmbedding.objects.ready(fingerprint).filter(result_type_id=result_type_id)


def due(checked: float) -> bool:
    """Whether a freshness check last made at ``checked`` (``time.monotonic()``) is due again."""
    interval = float(settings.REFRESH_INTERVAL)
    return interval <= 0 or time.monotonic() - checked >= interval


@dataclass(frozen=True)
class Snapshot:
    """What the database holds now: the rows, how many and how new, and the learned whitening."""

    rows: QuerySet
    count: int
    newest: datetime | None
    whitening: Whitening | None

    @classmethod
    def read(cls, result_type_id: int, fingerprint: str) -> Snapshot:
        rows = ready_rows(result_type_id, fingerprint)
        stats = rows.aggregate(n=Count("id"), newest=Max("updated_at"))
        whitening = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
        return cls(rows, stats["n"], stats["newest"], whitening)

    @property
    def stamp(self) -> str | None:
        """Identifies the whitening: every transformed vector changes with it."""
        return self.whitening.updated_at.isoformat() if self.whitening is not None else None

    def changed_since(self, newest: datetime | None) -> QuerySet:
        """The rows written since ``newest`` (all of them when None)."""
        return self.rows if newest is None else self.rows.filter(updated_at__gte=newest - COMMIT_SKEW)


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
