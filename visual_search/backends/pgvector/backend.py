"""The pgvector backend: vectors in PostgreSQL, searched by an HNSW index with cosine distance.

What is stored: the *transformed* vectors (whitened with the catalogue's learned ``Whitening``,
then L2-normalised), since cosine distance in an HNSW graph can only be taken between stored
vectors. Each generation (see :mod:`.schema`) keeps the whitening it was made with, and a search
transforms its query with that same whitening, so catalogue and query always agree, in every
process, whatever was refitted meanwhile. A refit (:meth:`PgvectorBackend.whitening_changed`)
builds the next generation from the rows beside the live one and swaps them atomically.

The rows stay the truth: a search joins ``ImageEmbedding`` and skips any vector whose row is no
longer ready or has changed since it was written, so a missed ``remove`` can never surface a
product on a photo it no longer shows.

A catalogue that outgrew its whitening (:func:`visual_search.backends.rows.outgrown`: learned
from a small catalogue, which has grown to twice that since) is searched as the NumPy and FAISS
backends search it: plain cosine where :func:`~visual_search.backends.rows.searched_with` says
so, never confident. The stored vectors cannot switch to plain cosine (each generation keeps its
whitening), so until the whitening is learned again a search scans the raw vectors of the rows in
memory (:class:`~visual_search.ranking.ArraySpace`, read again when the freshness check sees the
rows change); above ``OUTGROWN_SCAN_MAX`` rows it searches the HNSW index, still never confident.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
import time
import weakref
import zlib
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.core.exceptions import ImproperlyConfigured
from django.db import ProgrammingError, connections, transaction
from django.utils import timezone

from ...conf import settings
from ...models import ImageEmbedding, Whitening
from ...ranking import ArraySpace, Neighbours, transform
from ..base import BaseBackend, EmptySpace, group_by_result
from ..rows import outgrown, searched_with
from . import schema

logger = logging.getLogger("visual_search")

# pgvector's ceiling for hnsw.ef_search: one HNSW scan never yields more candidates than this.
MAX_EF_SEARCH = 1000
STAGE = "visual_search_pgvector_stage"
# Rows added per statement when the sweep repairs the index.
REPAIR_CHUNK = 2000
# While a catalogue has outgrown its whitening, a search scans the raw vectors of at most this many
# rows in memory (plain cosine where rows.searched_with says so; 20 MB of 512 floats, a few ms a
# search); a bigger one (a small whitening nobody learned again during a big import) is searched
# in the HNSW index, with the whitening it was stored with, and is never confident either.
OUTGROWN_SCAN_MAX = 10_000


@dataclass(frozen=True)
class Generation:
    """One live or building set of transformed vectors; immutable once created."""

    id: int
    dimensions: int
    state: str
    indexed: bool
    whitening: tuple[np.ndarray, np.ndarray] | None

    @property
    def table(self) -> str:
        return schema.vectors_table(self.id)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return transform(vectors, self.whitening)


@dataclass(frozen=True)
class Outgrown:
    """A model whose catalogue outgrew its whitening, as the freshness check (``_live``) read it:
    its ready rows (how many, counted up to ``OUTGROWN_SCAN_MAX + 1``, and the newest ``updated_at``)
    and the whitening's ``updated_at``; what the raw vectors in memory were read for."""

    ready: int
    newest: datetime | None
    whitening: datetime


class PgvectorBackend(BaseBackend):
    """Vectors in PostgreSQL next to the ``ImageEmbedding`` rows, HNSW with cosine distance.

    ``OPTIONS``: ``using`` (the database alias holding the rows, ``"default"``), ``m`` and
    ``ef_construction`` (the HNSW graph: 16 and 128; pgvector's own 64 gave recall@10 0.94 where 128
    gives 0.99 at a million vectors, for a build 1.7 times as long), ``ef_search`` (candidates per scan, 100),
    ``exact_max_rows`` (a search restricted to at most this many results is answered exactly, from
    the btree on ``result_id``, instead of filtering an HNSW scan: 20,000; see docs/performance.md for the
    measurement behind it), ``maintenance_work_mem`` (for the HNSW builds, e.g. ``"4GB"``; default:
    the server's setting).
    """

    reset_drops_everything = True
    store_names = ("vector table", "vector tables", "from PostgreSQL")
    option_names = ("using", "m", "ef_construction", "ef_search", "exact_max_rows", "maintenance_work_mem")

    @classmethod
    def setup_problems(cls, options: dict) -> list[str]:
        """The database named by ``using`` must be PostgreSQL (every search answered 503 otherwise)."""
        using = options.get("using", "default")
        if using not in connections.databases:
            return [f"OPTIONS['using'] = {using!r} is not a database in DATABASES."]
        connection = connections[using]
        return [] if connection.vendor == "postgresql" else [schema.postgresql_required(connection)]

    def __init__(self, alias: str = "default", *, using: str = "default", m: int = 16, ef_construction: int = 128,
                 ef_search: int = 100, exact_max_rows: int = 20_000, maintenance_work_mem: str | None = None, **options):
        super().__init__(alias, **options)
        connection = connections[using]
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(schema.postgresql_required(connection))
        self.using = using
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self.exact_max_rows = int(exact_max_rows)
        self.maintenance_work_mem = maintenance_work_mem
        self._whitenings: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}  # by generation id
        self._schema_ready = False
        self._bulk = False  # between reset() and finish(): HNSW indexes are built once, at the end
        self._lock = threading.Lock()
        # The live generation of each (model, fingerprint) as last read, re-read at most every
        # REFRESH_INTERVAL seconds: (when, generation, estimated rows, Outgrown or None, whether its
        # whitening is small enough to be outgrown). A search of a generation dropped meanwhile
        # fails and reads it again (search()).
        self._live_seen: dict[tuple[int, str], tuple[float, Generation, float, Outgrown | None, bool]] = {}
        # While a model's catalogue has outgrown its whitening: (Outgrown it was read for, the raw
        # vectors of its ready rows, searched instead of the generation; see the module doc).
        self._raw: dict[tuple[int, str], tuple[Outgrown, ArraySpace]] = {}
        # The hnsw.ef_search each database connection was last set to (a session setting).
        self._ef_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- writing ---------------------------------------------------------------------------------

    def add(self, embeddings: Sequence) -> None:
        """Write the transformed vectors of these ready rows into every generation of their model.

        Bulk-friendly: one binary ``COPY`` into a staging table, then one upsert, per model and
        generation; chunks of a few thousand rows are the right size. A newer vector of a row
        always wins over an older one, whichever arrives last.
        """
        groups: dict[tuple[int, str], list] = defaultdict(list)
        for row in embeddings:
            if row.status == ImageEmbedding.Status.READY and row.vector is not None:
                groups[(row.result_type_id, row.fingerprint)].append(row)
        for (result_type_id, fingerprint), rows in groups.items():
            vectors = np.stack([np.frombuffer(bytes(row.vector), dtype=np.float32) for row in rows])
            with transaction.atomic(using=self.using), self._cursor() as cursor:
                for generation in self._writable(cursor, result_type_id, fingerprint, vectors.shape[1]):
                    self._write(cursor, generation, rows, vectors)
            self._recount((result_type_id, fingerprint))

    def remove(self, embedding_ids: Collection[int]) -> None:
        """Delete these ids from every generation (a search would skip them anyway: see the module doc)."""
        ids = [int(i) for i in embedding_ids]
        if not ids:
            return
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            cursor.execute(f"SELECT id FROM {schema.GENERATIONS}")
            for (generation_id,) in cursor.fetchall():
                cursor.execute(f"DELETE FROM {schema.vectors_table(generation_id)} WHERE embedding_id = ANY(%s)", [ids])
        for key in list(self._live_seen):
            self._recount(key)

    def _recount(self, key: tuple[int, str]) -> None:
        """Rows of this model were written in this process: if its whitening is small enough to be
        outgrown, the next search reads the rows' count again (whether it is outgrown now, and the
        raw vectors if so), not after ``REFRESH_INTERVAL``, as the NumPy backend sees its own writes."""
        seen = self._live_seen.get(key)
        if seen is not None and seen[4]:
            self._live_seen.pop(key, None)

    def repair(self, result_type_id: int, fingerprint: str) -> int:
        """Add the ready rows missing from (or newer than) this model's generations, and drop the
        vectors of rows gone or no longer ready: see the base class. Returns how many were added."""
        rows = ImageEmbedding.objects.using(self.using)
        table = rows.model._meta.db_table
        missing: set[int] = set()
        with self._cursor() as cursor:
            for generation in self._generations(cursor, result_type_id, fingerprint):
                cursor.execute(
                    f"SELECT e.id FROM {table} e LEFT JOIN {generation.table} v ON v.embedding_id = e.id"
                    " WHERE e.result_type_id = %s AND e.fingerprint = %s AND e.status = %s"
                    " AND (v.embedding_id IS NULL OR v.updated_at < e.updated_at)",
                    [result_type_id, fingerprint, ImageEmbedding.Status.READY.value],
                )
                missing.update(row_id for (row_id,) in cursor.fetchall())
                # And the vectors of rows deleted, or no longer ready, whose remove() was lost.
                cursor.execute(
                    f"DELETE FROM {generation.table} v WHERE NOT EXISTS (SELECT 1 FROM {table} e"
                    " WHERE e.id = v.embedding_id AND e.status = %s)",
                    [ImageEmbedding.Status.READY.value],
                )
                extra = cursor.rowcount
                if extra:
                    logger.warning("pgvector: %s vectors of rows gone or not ready were left in the index; removed", extra)
        ids = sorted(missing)
        for start in range(0, len(ids), REPAIR_CHUNK):
            self.add(list(rows.filter(pk__in=ids[start : start + REPAIR_CHUNK])))
        if ids:
            logger.warning("pgvector: %s ready vectors of %s were missing from the index; added", len(ids), fingerprint)
        return len(ids)

    def reset(self) -> None:
        """Drop every generation; the ``add`` calls that follow (a rebuild) fill new ones, whose
        HNSW indexes :meth:`finish` builds in one pass (much faster than inserting into a graph)."""
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            schema.drop_all(cursor)
        self._whitenings.clear()
        self._live_seen.clear()
        self._raw.clear()
        self._bulk = True

    def finish(self) -> None:
        """End a rebuild: build the missing HNSW indexes and refresh the planner's statistics."""
        self._bulk = False
        with self._cursor() as cursor:
            cursor.execute(f"SELECT id FROM {schema.GENERATIONS} WHERE NOT indexed")
            for (generation_id,) in cursor.fetchall():
                self._index(cursor, generation_id)

    def whitening_changed(self, result_type_id: int, fingerprint: str) -> None:
        """The whitening of this model was (re)learned: build the next generation from the rows,
        then swap it in. Searches use the previous one, consistently, until the swap."""
        with self._refitting(result_type_id, fingerprint):
            self._rebuild_generation(result_type_id, fingerprint)

    @contextlib.contextmanager
    def _refitting(self, result_type_id: int, fingerprint: str):
        """Hold this model's refit lock (every connection, every process). One refit at a time per
        model (a second one waits, then builds from the newer whitening): two builds swapping
        concurrently would drop each other's tables. A prune takes it too, so it never drops the
        generation a refit is still filling."""
        key = _lock_key("refit", result_type_id, fingerprint)
        with self._cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            with self._cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])

    def forget_fingerprints(self, keep: Collection[str]) -> int:
        """Drop the generations (their vector tables and catalogue rows) of every fingerprint not
        in ``keep``, and return how many went: ``visual_search_versions prune`` after deleting the
        rows of those fingerprints, so their vectors do not stay in PostgreSQL for ever.

        Each model and fingerprint goes the way a refit drops the generation it replaces: under the
        refit lock (a refit of it running now finishes first, then its new generation goes too),
        in one transaction. The generations of a kept fingerprint, live or building, are never
        touched. A process still searching a dropped generation reads the live one again and finds
        none: no results (the rows are gone too), no error.
        """
        keep = set(keep)
        with self._cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT result_type_id, fingerprint FROM {schema.GENERATIONS} ORDER BY 1, 2")
            models = [(result_type_id, fingerprint) for result_type_id, fingerprint in cursor.fetchall() if fingerprint not in keep]
        dropped = 0
        for result_type_id, fingerprint in models:
            with self._refitting(result_type_id, fingerprint):
                dropped += self._drop_generations(result_type_id, fingerprint)
        if dropped:
            logger.info("pgvector: dropped %s generations of %s pruned fingerprints", dropped, len({fp for _, fp in models}))
        return dropped

    def _rebuild_generation(self, result_type_id: int, fingerprint: str) -> None:
        rows = ImageEmbedding.objects.using(self.using).ready(fingerprint).filter(result_type_id=result_type_id)
        first = rows.only("vector").first()
        if first is None:
            self._drop_generations(result_type_id, fingerprint)
            return
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            generation = self._create(cursor, result_type_id, fingerprint, len(first.array), state="building")
        chunk = []
        for row in rows.only("id", "result_id", "updated_at", "vector", "status").iterator(chunk_size=5000):
            chunk.append(row)
            if len(chunk) == 5000:
                self._write_chunk(generation, chunk)
                chunk = []
        if chunk:
            self._write_chunk(generation, chunk)
        with self._cursor() as cursor:
            self._index(cursor, generation.id)
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {schema.GENERATIONS} WHERE result_type_id = %s AND fingerprint = %s AND id <> %s",
                [result_type_id, fingerprint, generation.id],
            )
            for (old,) in cursor.fetchall():
                self._drop(cursor, old)
            cursor.execute(f"UPDATE {schema.GENERATIONS} SET state = 'live' WHERE id = %s", [generation.id])
        self._live_seen.clear()
        self._raw.pop((result_type_id, fingerprint), None)
        logger.info("pgvector: generation %s (whitened) is live for %s/%s", generation.id, result_type_id, fingerprint)

    def _write_chunk(self, generation: Generation, rows: list) -> None:
        vectors = np.stack([np.frombuffer(bytes(row.vector), dtype=np.float32) for row in rows])
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            self._write(cursor, generation, rows, vectors)

    def _write(self, cursor, generation: Generation, rows: list, vectors: np.ndarray) -> None:
        transformed = generation.transform(vectors).astype(">f4")
        header = struct.pack(">HH", transformed.shape[1], 0)  # pgvector's binary format: dims, unused
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (embedding_id bigint, result_id varchar(64),"
            " updated_at timestamptz, vector vector) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {STAGE}")
        # The vector goes as raw bytes: PostgreSQL reads each COPY field with the column's own
        # binary input function, so no client-side adapter for the vector type is needed.
        # With USE_TZ = False updated_at is naive local time, which psycopg cannot send as timestamptz:
        # it goes as its wall time (the same binary form), read as the session's local time below,
        # as PostgreSQL read it when Django stored the row (the ambiguous hour alike), so that the
        # copy's updated_at equals the row's, as searches require.
        naive = bool(rows) and timezone.is_naive(rows[0].updated_at)
        stamp = f"({STAGE}.updated_at AT TIME ZONE 'UTC')::timestamptz" if naive else "updated_at"
        with cursor.cursor.copy(f"COPY {STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "varchar", "timestamp" if naive else "timestamptz", "bytea"])
            for row, vector in zip(rows, transformed):
                copy.write_row((row.pk, row.result_id, row.updated_at, header + vector.tobytes()))
        table = generation.table
        cursor.execute(
            f"INSERT INTO {table} (embedding_id, result_id, updated_at, vector)"
            f" SELECT DISTINCT ON (embedding_id) embedding_id, result_id, {stamp}, vector FROM {STAGE}"
            " ORDER BY embedding_id, updated_at DESC"
            " ON CONFLICT (embedding_id) DO UPDATE SET result_id = EXCLUDED.result_id,"
            f" updated_at = EXCLUDED.updated_at, vector = EXCLUDED.vector WHERE EXCLUDED.updated_at >= {table}.updated_at"
        )

    def _writable(self, cursor, result_type_id: int, fingerprint: str, dimensions: int) -> list[Generation]:
        """The live and building generations of a model, creating the live one if there is none."""
        generations = self._generations(cursor, result_type_id, fingerprint)
        if not any(g.state == "live" for g in generations):
            # One creator at a time per model: concurrent workers wait here, then see its result.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key("create", result_type_id, fingerprint)])
            generations = self._generations(cursor, result_type_id, fingerprint)
            if not any(g.state == "live" for g in generations):
                generations.append(self._create(cursor, result_type_id, fingerprint, dimensions, state="live"))
        return generations

    def _create(self, cursor, result_type_id: int, fingerprint: str, dimensions: int, *, state: str) -> Generation:
        whitening = Whitening.objects.using(self.using).filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
        arrays = whitening.arrays() if whitening is not None else None
        cursor.execute(
            f"INSERT INTO {schema.GENERATIONS} (result_type_id, fingerprint, dimensions, whitening_updated_at, mean,"
            " projection, state) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [result_type_id, fingerprint, whitening.dimensions if whitening else dimensions,
             whitening.updated_at if whitening else None, bytes(whitening.mean) if whitening else None,
             bytes(whitening.projection) if whitening else None, state],
        )
        generation_id = cursor.fetchone()[0]
        schema.create_vectors_table(cursor, generation_id, whitening.dimensions if whitening else dimensions)
        generation = Generation(generation_id, whitening.dimensions if whitening else dimensions, state, False, arrays)
        if state == "live" and not self._bulk:
            # An empty graph costs nothing; rows inserted later are linked in one by one.
            self._index(cursor, generation_id)
        self._whitenings[generation_id] = arrays
        self._live_seen.clear()
        return generation

    def _index(self, cursor, generation_id: int) -> None:
        with transaction.atomic(using=self.using):
            if self.maintenance_work_mem:
                # The build is several times faster when the whole graph fits in this memory
                # (about 0.7 GB per million 128-dimensional vectors at m=16); pgvector warns otherwise.
                cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [str(self.maintenance_work_mem)])
            schema.create_hnsw_index(cursor, generation_id, self.m, self.ef_construction)
            cursor.execute(f"UPDATE {schema.GENERATIONS} SET indexed = true WHERE id = %s", [generation_id])
        cursor.execute(f"ANALYZE {schema.vectors_table(generation_id)}")
        self._live_seen.clear()  # now indexed, with a row count

    def _drop_generations(self, result_type_id: int, fingerprint: str) -> int:
        """Drop every generation of this model and fingerprint, in one transaction; how many.
        Call it holding the refit lock (:meth:`_refitting`)."""
        with transaction.atomic(using=self.using), self._cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {schema.GENERATIONS} WHERE result_type_id = %s AND fingerprint = %s",
                [result_type_id, fingerprint],
            )
            generations = [generation_id for (generation_id,) in cursor.fetchall()]
            for generation_id in generations:
                self._drop(cursor, generation_id)
        return len(generations)

    def _drop(self, cursor, generation_id: int) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {schema.vectors_table(generation_id)}")
        cursor.execute(f"DELETE FROM {schema.GENERATIONS} WHERE id = %s", [generation_id])
        self._whitenings.pop(generation_id, None)
        self._live_seen.clear()

    # -- reading ---------------------------------------------------------------------------------

    def _generations(self, cursor, result_type_id: int, fingerprint: str, *, live_only: bool = False) -> list[Generation]:
        cursor.execute(
            f"SELECT id, dimensions, state, indexed FROM {schema.GENERATIONS}"
            " WHERE result_type_id = %s AND fingerprint = %s" + (" AND state = 'live'" if live_only else ""),
            [result_type_id, fingerprint],
        )
        return [Generation(gid, dims, state, indexed, self._whitening(cursor, gid)) for gid, dims, state, indexed in cursor.fetchall()]

    def _whitening(self, cursor, generation_id: int):
        # A generation's whitening never changes: read it once per process.
        if generation_id not in self._whitenings:
            cursor.execute(f"SELECT mean, projection, dimensions FROM {schema.GENERATIONS} WHERE id = %s", [generation_id])
            mean, projection, dims = cursor.fetchone()
            if mean is None:
                self._whitenings[generation_id] = None
            else:
                mean = np.frombuffer(bytes(mean), dtype=np.float32)
                self._whitenings[generation_id] = (mean, np.frombuffer(bytes(projection), dtype=np.float32).reshape(len(mean), dims))
        return self._whitenings[generation_id]

    def search(self, vector, **kwargs):
        """As :meth:`BaseBackend.search`, once more if the generation was swapped out meanwhile."""
        for attempt in (1, 2):
            try:
                return super().search(vector, **kwargs)
            except ProgrammingError:
                # A whitening refit dropped the generation's table between reading its id and
                # scanning it: read the live one again, once.
                self._live_seen.clear()
                if attempt == 2:
                    raise
        return []

    @contextlib.contextmanager
    def space(self, result_type_id: int, fingerprint: str):
        """The live generation of this model, searched through one cursor; while its catalogue has
        outgrown its whitening, the raw vectors of its rows in memory (see the module doc)."""
        connection = connections[self.using]
        # Outside a transaction every statement commits on its own: no BEGIN/COMMIT round trips.
        # Inside one (ATOMIC_REQUESTS), a savepoint keeps a failed attempt from breaking it.
        block = transaction.atomic(using=self.using) if connection.in_atomic_block else contextlib.nullcontext()
        key = (result_type_id, fingerprint)
        with block, self._cursor() as cursor:
            live = self._live(cursor, result_type_id, fingerprint)
            if live is None:
                self._raw.pop(key, None)
                yield EmptySpace()
                return
            generation, rows, stale = live
            if stale is None:
                self._raw.pop(key, None)  # learned again: the memory goes
                yield _Space(self, cursor, generation, rows)
            elif stale.ready <= OUTGROWN_SCAN_MAX:
                yield self._raw_space(result_type_id, fingerprint, stale)
            else:
                self._raw.pop(key, None)
                yield _Space(self, cursor, generation, rows, outgrown=True)

    def _raw_space(self, result_type_id: int, fingerprint: str, stale: Outgrown) -> ArraySpace:
        """The ready rows' own vectors of an outgrown catalogue, transformed as :func:`searched_with`
        says (plain cosine, or the whitening it outgrew), kept until the freshness check sees the
        rows or the whitening change (one query for the rows, one for the whitening, then none)."""
        key = (result_type_id, fingerprint)
        kept = self._raw.get(key)
        if kept is not None and kept[0] == stale:
            return kept[1]
        whitening = Whitening.objects.using(self.using).filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
        rows = ImageEmbedding.objects.using(self.using).ready(fingerprint).filter(result_type_id=result_type_id)
        result_ids, vectors = [], []
        for result_id, data in rows.order_by("pk").values_list("result_id", "vector").iterator(chunk_size=2000):
            if data:
                result_ids.append(result_id)
                vectors.append(np.frombuffer(bytes(data), dtype=np.float32))
        applied = searched_with(whitening, len(vectors))
        arrays = applied.arrays() if applied is not None else None
        if vectors:
            space = ArraySpace.of(transform(np.stack(vectors), arrays), result_ids, arrays)
        else:
            space = ArraySpace.of(np.zeros((0, 1), dtype=np.float32), [], arrays)
        space.outgrown = True
        self._raw[key] = (stale, space)
        return space

    def _live(self, cursor, result_type_id: int, fingerprint: str) -> tuple[Generation, float, Outgrown | None] | None:
        """The live generation, its estimated row count, and whether the catalogue outgrew its
        whitening (:class:`Outgrown`, else None), setting the default ``hnsw.ef_search`` for this
        connection in the same round trip; no round trip at all when all were read within
        ``REFRESH_INTERVAL`` (a search then makes two: the scan, and its products' vectors). The
        ready rows are counted in that round trip only for a whitening learned from fewer than
        ``WHITENING_MIN_VECTORS`` (by the index on the rows, up to ``OUTGROWN_SCAN_MAX + 1``)."""
        key, ef = (result_type_id, fingerprint), min(MAX_EF_SEARCH, self.ef_search)
        seen, interval = self._live_seen.get(key), float(settings.REFRESH_INTERVAL)
        if seen is not None and interval > 0 and time.monotonic() - seen[0] < interval and self.ef_in(cursor) is not None:
            return seen[1], seen[2], seen[3]  # the search sets the ef_search it needs if this connection has another
        small = int(settings.WHITENING_MIN_VECTORS)
        cursor.execute(
            f"SELECT g.id, g.dimensions, g.indexed, greatest(c.reltuples, 1),"
            f" set_config('hnsw.ef_search', %(ef)s, false), w.trained_on, w.updated_at, r.n, r.newest"
            f" FROM {schema.GENERATIONS} g"
            " LEFT JOIN pg_class c ON c.oid = to_regclass('visual_search_pgvector_' || g.id)"
            f" LEFT JOIN {Whitening._meta.db_table} w ON w.result_type_id = g.result_type_id AND w.fingerprint = g.fingerprint"
            # Counted only for a small whitening: the condition on w is a one-time filter, no scan.
            " LEFT JOIN LATERAL (SELECT count(*) AS n, max(e.updated_at) AS newest FROM (SELECT e.updated_at"
            f" FROM {ImageEmbedding._meta.db_table} e WHERE e.result_type_id = g.result_type_id"
            " AND e.fingerprint = g.fingerprint AND e.status = %(ready)s"
            " AND w.trained_on > 0 AND w.trained_on < %(small)s LIMIT %(most)s) e) r ON true"
            " WHERE g.result_type_id = %(type)s AND g.fingerprint = %(fingerprint)s AND g.state = 'live'",
            {"ef": str(ef), "ready": ImageEmbedding.Status.READY.value, "small": small, "most": OUTGROWN_SCAN_MAX + 1,
             "type": result_type_id, "fingerprint": fingerprint},
        )
        row = cursor.fetchone()
        self.set_ef_in(cursor, ef)
        if row is None:
            return None  # not remembered: the first vectors added are found at once
        generation_id, dimensions, indexed, rows, _, trained_on, whitened_at, ready, newest = row
        generation = Generation(generation_id, dimensions, "live", indexed, self._whitening(cursor, generation_id))
        stale = None
        if trained_on is not None and outgrown(trained_on, ready or 0):
            stale = Outgrown(int(ready), newest, whitened_at)
        counted = trained_on is not None and 0 < trained_on < small
        self._live_seen[key] = (time.monotonic(), generation, float(rows or 1), stale, counted)
        return generation, float(rows or 1), stale

    def ef_in(self, cursor) -> int | None:
        """The ``hnsw.ef_search`` this cursor's connection was last set to by this backend."""
        return self._ef_of.get(cursor.connection)

    def set_ef_in(self, cursor, ef: int) -> None:
        self._ef_of[cursor.connection] = ef

    @contextlib.contextmanager
    def _by_index(self, cursor, restrict):
        """For an exact scan of a restriction: look the allowed rows up by the btree on result_id and
        their ImageEmbedding rows by primary key. Left to itself, the planner reads both tables
        whole and hash-joins them (measured 120 ms instead of a few for 500 allowed of 50,000)."""
        if restrict is None:
            yield
            return
        with transaction.atomic(using=self.using):
            cursor.execute(
                "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),"
                " set_config('enable_mergejoin', 'off', true)"
            )
            yield

    def _ef(self, generation: Generation, rows: float, restrict, width: int) -> int | None:
        """The ``hnsw.ef_search`` that should keep ``width`` allowed rows, or None: scan exactly.

        pgvector applies a filter to the candidates an HNSW scan yields (at most ``ef_search``), so
        a selective restriction leaves too few of them. Exact is chosen when the restriction is
        small enough to scan (``exact_max_rows``), or when even the widest scan
        (``MAX_EF_SEARCH``) would not be expected to yield ``width`` allowed rows, with a margin of 2.
        """
        if not generation.indexed:
            return None
        if restrict is None:
            return min(MAX_EF_SEARCH, max(self.ef_search, width))
        if len(restrict) <= self.exact_max_rows:
            return None
        ef = max(self.ef_search, width, math.ceil(2 * width / min(1.0, len(restrict) / rows)))
        return None if ef > MAX_EF_SEARCH else ef

    def _nearest(self, cursor, generation, query, restrict, exclude, width, exact, vectors=False) -> list[tuple]:
        """``(result_id, cosine distance, vector or None)`` of the ``width`` nearest allowed rows."""
        where, params = self._filters(restrict, exclude)
        # "+ 0": an ORDER BY the HNSW index cannot serve, so the planner scans the allowed rows exactly.
        order = "(t.vector <=> %(q)s::vector) + 0" if exact else "t.vector <=> %(q)s::vector"
        with self._by_index(cursor, restrict if exact else None):
            cursor.execute(
                f"SELECT t.result_id, t.vector <=> %(q)s::vector{', vector_send(t.vector)' if vectors else ''}"
                f" FROM {generation.table} t JOIN {ImageEmbedding._meta.db_table} e ON e.id = t.embedding_id"
                f" WHERE e.status = 'ready' AND e.updated_at = t.updated_at{where}"
                f" ORDER BY {order} LIMIT %(width)s",
                {"q": _literal(query), "width": width, **params},
            )
            return [(row[0], float(row[1]), _decode(row[2]) if vectors else None) for row in cursor.fetchall()]

    def _result_vectors(self, cursor, generation, result_ids: list[str]) -> list[tuple]:
        """``(result_id, vector)`` of every searchable row of these results (btree on result_id)."""
        cursor.execute(
            f"SELECT t.result_id, vector_send(t.vector) FROM {generation.table} t"
            f" JOIN {ImageEmbedding._meta.db_table} e ON e.id = t.embedding_id"
            " WHERE e.status = 'ready' AND e.updated_at = t.updated_at AND t.result_id = ANY(%s)",
            [result_ids],
        )
        return [(result_id, _decode(data)) for result_id, data in cursor.fetchall()]

    @staticmethod
    def _filters(restrict, exclude) -> tuple[str, dict]:
        where, params = "", {}
        if restrict is not None:
            where += " AND t.result_id = ANY(%(restrict)s)"
            params["restrict"] = restrict
        if exclude:
            where += " AND NOT (t.result_id = ANY(%(exclude)s))"
            params["exclude"] = exclude
        return where, params

    def _cursor(self):
        connection = connections[self.using]
        if not self._schema_ready:
            with self._lock:
                if not self._schema_ready:
                    schema.ensure_schema(connection)
                    self._schema_ready = True
        return connection.cursor()


def _lock_key(purpose: str, result_type_id: int, fingerprint: str) -> int:
    return zlib.crc32(f"visual_search_pgvector:{purpose}:{result_type_id}:{fingerprint}".encode())


def _decode(data) -> np.ndarray:
    """A vector as pgvector's binary form (``vector_send``) gives it: two 16-bit integers (the
    dimensions, then zero), then big-endian float32s: no text to parse, as ``::real[]`` had."""
    return np.frombuffer(bytes(data), dtype=">f4", offset=4)


def _literal(vector: np.ndarray) -> str:
    """pgvector's text form, ``[x,y,...]``: the query travels as one text parameter."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


class _Space:
    """One search's view of the live generation (see :class:`visual_search.ranking.VectorSpace`)."""

    def __init__(self, backend: PgvectorBackend, cursor, generation: Generation, rows: float, *, outgrown: bool = False):
        self.backend, self.cursor, self.generation, self.rows = backend, cursor, generation, rows
        # The catalogue outgrew its whitening, too big to scan in memory: no confident result.
        self.outgrown = outgrown

    def transform(self, vector: np.ndarray) -> np.ndarray:
        return self.generation.transform(vector)

    def allow(self, restrict_to, exclude) -> tuple[list[str] | None, list[str]]:
        restrict = None if restrict_to is None else sorted({str(r) for r in restrict_to})
        return restrict, sorted({str(r) for r in exclude})

    def result_vectors(self, result_ids) -> dict[str, np.ndarray]:
        rows = self.backend._result_vectors(self.cursor, self.generation, sorted({str(r) for r in result_ids}))
        if not rows:
            return {}
        return group_by_result([r for r, _ in rows], np.asarray([v for _, v in rows], dtype=np.float32))

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False) -> Neighbours:
        restrict, exclude = allowed
        if restrict is not None and not restrict:
            return Neighbours()
        ef = None if exact else self.backend._ef(self.generation, self.rows, restrict, k)
        if ef is not None and ef != self.backend.ef_in(self.cursor):
            self.cursor.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(ef)])
            self.backend.set_ef_in(self.cursor, ef)
        rows = self.backend._nearest(self.cursor, self.generation, query, restrict, exclude, k, ef is None, vectors=with_vectors)
        vectors = np.asarray([v for _, _, v in rows], dtype=np.float32) if with_vectors and rows else None
        return Neighbours([r for r, _, _ in rows], 1.0 - np.asarray([d for _, d, _ in rows], dtype=np.float32), vectors, exact=ef is None)
