"""Approximate nearest-neighbour search in process memory (FAISS IVF-Flat), for big catalogues.

Chosen by measurement (docs/performance.md, "FAISS IVF against exact NumPy"): on 2 shared cores an
IVF index of 1M vectors was built in about a minute from a matrix, where HNSW graphs (FAISS or
usearch) took 4 to 6 minutes for 100k, for the same recall and speed. IVF-Flat keeps the vectors
themselves (no lossy compression): it only chooses which ``NPROBE`` of its ``nlist`` clusters to
compare the query with, then ranks them exactly. A build reads the rows as tuples into pages,
whitens them in place, learns the clusters from a sample (``TRAIN_PER_LIST`` vectors per cluster)
and adds the vectors ``ADD_BLOCK`` at a time, freeing each block once added.

How the processes stay consistent, the same way as :class:`~.numpy.NumpyBackend`:

* The database rows stay the single truth. Each process keeps one index per (result model,
  fingerprint) in memory and, before a search (at most every ``REFRESH_INTERVAL`` seconds), asks
  the database one indexed aggregate (count and newest ``updated_at``). Rows changed since are
  fetched and applied to the index in memory (``add_with_ids``/``remove_ids``); deleted rows are
  noticed by the count. So a web process sees what a Celery worker wrote without a restart.
* The index is persisted in ``OPTIONS["PATH"]``, one file per (result model, fingerprint), so a
  process that starts loads it (seconds) instead of clustering every vector again. Only a *build*
  writes the file: ``visual_search_rebuild_index``, or a process that found no usable file (none
  yet, another whitening, or the catalogue has grown to twice what the clusters were trained on).
  Incremental changes are never written: each process replays them from the rows, so two processes
  never write one file from different states. Builds take an exclusive ``fcntl`` lock on the file's
  ``.lock`` beside it, so processes starting together build once, the others wait and load. The
  file is written under a temporary name and renamed over the old one (atomic): a reader never sees
  half a file. Every process notices a new file (its inode changes) at its next freshness check and
  loads it.
* Each machine has its own ``PATH`` (and builds its file once); rows are shared through the
  database, so several web servers still answer from the same vectors.
* A new whitening changes every transformed vector: the index is built again (by the first process
  that searches, or beforehand by ``visual_search_rebuild_index``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ..batching import row_chunks
from ..ranking import Neighbours, transform
from .base import REBUILD_CHUNK, BaseBackend, EmptySpace, group_by_result
from .rows import COMMIT_SKEW, ResultCodes, Snapshot, comparable, due, stored_whitening

try:
    import fcntl
except ImportError:  # Windows: no lock; run one process per PATH there.
    fcntl = None

logger = logging.getLogger("visual_search")

FORMAT = "visual_search.faiss/1"
# Below this many vectors one cluster holds them all: the index is then an exact scan.
MIN_CLUSTERED = 1_000
# k-means learns the clusters from this many vectors per cluster (FAISS asks for 39 at least).
TRAIN_PER_LIST = 50
# A build keeps the vectors it reads in pages and whitens them in place, PAGE rows at a time (1 MB at
# 512 dimensions): what NumPy allocates on the way is a few of those, not a few copies of the
# catalogue. Transformed in blocks of 50,000 rows, a build of 6,000 vectors peaked at 4.8 times them
# (the raw rows, their stack, and whiten()'s three temporaries of it at once). A page holds a
# quarter of the rows before it (PAGE at least), up to ADD_BLOCK rows in all; every later page ADD_BLOCK.
# Each ADD_BLOCK rows are handed to FAISS in one call, as before: FAISS assigns a call's vectors to
# clusters 4,096 at a time from its first, the last bits of a similarity depend on a vector's place
# among them (BLAS), and they settle near-ties between two clusters; so the index is the same. Calls
# of 8,192 made FAISS's lists grow by more steps, a sixth bigger at the end. A page of 1 MB freed
# stayed in the process's heap after the build; a page of ADD_BLOCK rows goes back to the system.
PAGE = 512
ADD_BLOCK = 50_000
# A last page of fewer rows is joined to the one before, and so is a last run of rows of a page:
# BLAS multiplies a block of a few rows another way (the last bits of the products differ), and each
# vector is to be whitened exactly as when the catalogue was transformed in one block.
MIN_PAGE = 32
# Restricted searches (FaissBackend's docstring; defaults measured by ``python -m benchmarks ann``).
# GATHER_MAX: the most allowed vectors gathered and compared one by one (40 MB at 512 dimensions,
# held while the search runs). GATHER_COST: gathering a vector (and comparing it twice) costs about
# what a FAISS scan spends on this many vectors, most of them skipped as not allowed: vectors are
# gathered only when the clusters that hold them hold this many times more.
GATHER_MAX = 20_000
GATHER_COST = 16
# FILTER_DEPTH: a probe's first round reaches this many times the allowed vectors an unrestricted
# search compares; rounds go on while one changes the first SHOWN results, and become an exact scan
# once the depth reaches SCAN_SHARE of the allowed vectors.
FILTER_DEPTH = 3.0
SHOWN = 10
SCAN_SHARE = 0.5
# Restrictions of at least this many result ids are looked up as numbers when every result id is a
# canonical decimal (primary keys): one NumPy parse and a table, not one dict lookup per id.
NUMERIC_MIN = 64
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)
_NONE = np.zeros(0, dtype=np.int64)


def _umask() -> int:
    """The process's umask (read by setting it, as nothing else reads it portably)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImproperlyConfigured(
            "visual_search.backends.faiss.FaissBackend needs FAISS: pip install django-visual-search[ann]"
        ) from exc
    return faiss


def _matrix(blobs: Sequence) -> np.ndarray:
    """One float32 row per stored vector (bytes or memoryview, all of one length)."""
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)


def _sample(pages: list[np.ndarray], keep: np.ndarray, size: int) -> np.ndarray:
    """``size`` of the kept rows at random (all of them when fewer), to learn the clusters from:
    copied from the pages into one array, without a list of parts to stack (a second copy)."""
    rows = np.flatnonzero(keep)
    if len(rows) > size:
        rows = np.sort(np.random.default_rng(0).choice(rows, size, replace=False))
    sample = np.empty((len(rows), pages[0].shape[1]), dtype=np.float32)
    start = filled = 0
    for page in pages:
        low, high = np.searchsorted(rows, [start, start + len(page)])
        # mode="clip": with the default, NumPy copies the rows taken before writing them to out.
        np.take(page, rows[low:high] - start, axis=0, out=sample[filled : filled + high - low], mode="clip")
        filled += high - low
        start += len(page)
    return sample


def _transformed(page: np.ndarray, transform) -> np.ndarray:
    """``page`` transformed ``PAGE`` rows at a time (a last run of fewer than ``MIN_PAGE`` with the
    run before), in place when that keeps the number of dimensions."""
    starts = list(range(0, len(page), PAGE))
    if len(starts) > 1 and len(page) - starts[-1] < MIN_PAGE:
        starts.pop()
    out = None
    for first, end in zip(starts, [*starts[1:], len(page)]):
        vectors = transform(page[first:end])
        if out is None:
            out = page if vectors.shape[1] == page.shape[1] else np.empty((len(page), vectors.shape[1]), dtype=np.float32)
        out[first:end] = vectors
    return out


def _blocks(pages: list[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """The ``n`` rows of the pages in order, in blocks of ``ADD_BLOCK`` rows (the last one shorter):
    the first pages joined, every later page as it is; each page is dropped from ``pages`` (freed)
    once its last row is handed over."""
    page, offset = 0, 0  # the next row: its page and its place in it
    for first in range(0, n, ADD_BLOCK):
        parts, wanted = [], min(ADD_BLOCK, n - first)
        while wanted:
            taken = min(wanted, len(pages[page]) - offset)
            parts.append(pages[page][offset : offset + taken])
            offset, wanted = offset + taken, wanted - taken
            if offset == len(pages[page]):
                pages[page], page, offset = None, page + 1, 0
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        yield rows
        del rows


def _decimals(strings: Collection, count: int) -> np.ndarray | None:
    """``strings`` as int64 when every one is a canonical decimal (``"7"``; not ``"07"``, ``" 7"``,
    ``"+7"`` or ``"٧"``), else None. Parsed in one NumPy call: three times faster than ``int()``
    on each."""
    try:
        joined = " ".join(strings)
    except TypeError:
        return None
    # Only digits and spaces: anything else is no decimal, and NumPy before 2.3 warns (deprecated)
    # where it stops parsing.
    if not joined.isascii() or not joined.replace(" ", "").isdigit():
        return np.zeros(0, dtype=np.int64) if count == 0 and not joined else None
    try:
        numbers = np.fromstring(joined, dtype=np.int64, sep=" ")
    except ValueError:
        return None
    # Signs, leading zeros, spaces and empty strings all change either the count or the length.
    digits = count + int(np.searchsorted(_POWERS, numbers, side="right").sum())
    if len(numbers) != count or (count and len(joined) != count - 1 + digits):
        return None
    return numbers


@dataclass
class _Index(ResultCodes):
    """One IVF index and what maps its ids (``ImageEmbedding`` ids) back to results."""

    index: object = None  # faiss.IndexIVFFlat, or None while there is no vector
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # result code of each id
    whitening: tuple[np.ndarray, np.ndarray] | None = None
    stamp: str | None = None  # updated_at of the whitening these vectors were transformed with
    newest: datetime | None = None  # newest row applied
    trained_on: int = 0
    # The catalogue outgrew its whitening (rows.outgrown): no confident result (rows.searched_with).
    outgrown: bool = False
    file: tuple | None = None  # (inode, mtime_ns, size) of the file this index was loaded from or saved to
    signature: tuple | None = None
    checked: float = 0.0
    # Derived when a restricted search first needs them; None again after each change of ``ids``.
    by_code: tuple | None = None  # (positions sorted by result code, where each code starts in them)
    clusters: tuple | None = None  # (the IVF list of each position, how many vectors each list holds)
    numbers: tuple | None = None  # (result ids looked at, number -> code table or None: not all decimal)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(transform(vectors, self.whitening), dtype=np.float32)

    def codes_of(self, found: np.ndarray) -> np.ndarray:
        return self.codes[np.searchsorted(self.ids, found)]

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.index is not None else 0

    def changed(self) -> None:
        """``ids``/``codes`` changed (under the write lock): what was derived from them is stale."""
        self.by_code = self.clusters = None

    def add_results(self, result_ids: list[str]) -> np.ndarray:
        """The code of each of these result ids, numbering new ones."""
        if not self.result_ids:  # a build: number them all at once
            self.result_ids = list(dict.fromkeys(result_ids))
            self.result_codes = {r: n for n, r in enumerate(self.result_ids)}
            return np.fromiter(map(self.result_codes.__getitem__, result_ids), dtype=np.int64, count=len(result_ids))
        codes = np.fromiter(map(self.result_codes.get, result_ids, repeat(-1)), dtype=np.int64, count=len(result_ids))
        for n in np.flatnonzero(codes < 0).tolist():
            codes[n] = self.code(result_ids[n])
        return codes

    def result_codes_of(self, result_ids: Collection) -> np.ndarray:
        """The code of each result id (-1: none here)."""
        count = len(result_ids)
        if count >= NUMERIC_MIN:
            table = self._number_table()
            numbers = _decimals(result_ids, count) if table is not None else None
            if numbers is not None:
                codes = np.full(count, -1, dtype=np.int64)
                known = numbers < len(table)
                codes[known] = table[numbers[known]]
                return codes
        # One dict lookup per id: about 1 µs each at a million results (cache misses).
        return np.fromiter(map(self.result_codes.get, map(str, result_ids), repeat(-1)), dtype=np.int64, count=count)

    def _number_table(self) -> np.ndarray | None:
        """``table[int(result_id)]`` is its code (-1: none) while every result id is a canonical
        decimal (primary keys, a dense range), else None. Kept up to date as results are added."""
        seen, table = self.numbers or (0, np.zeros(0, dtype=np.int32))
        count = len(self.result_ids)
        if table is None or seen >= count:
            return table
        numbers = _decimals(self.result_ids[seen:count], count - seen)
        size = max(len(table), int(numbers.max()) + 1) if numbers is not None else 0
        if numbers is None or size > 4 * count + 1024:  # not numbers, or too sparse for a table
            self.numbers = (count, None)
            return None
        grown = np.full(size, -1, dtype=np.int32)  # a new array: searches may still read the old one
        grown[: len(table)] = table
        grown[numbers] = np.arange(seen, count)
        self.numbers = (count, grown)
        return grown

    def _by_code(self) -> tuple[np.ndarray, np.ndarray]:
        cached = self.by_code
        if cached is None:
            starts = np.zeros(len(self.result_ids) + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.codes, minlength=len(starts) - 1), out=starts[1:])
            cached = self.by_code = (np.argsort(self.codes, kind="stable"), starts)
        return cached

    def positions_of(self, codes: np.ndarray, unwanted: np.ndarray = _NONE) -> np.ndarray:
        """The positions in ``ids`` (sorted, once each) of every vector of ``codes`` but ``unwanted`` ones."""
        if len(codes) * 8 >= len(self.ids):  # a big share: one pass over every vector's code
            flags = np.zeros(len(self.result_ids), dtype=bool)
            flags[codes] = True
            flags[unwanted] = False
            return np.flatnonzero(flags[self.codes])
        if len(unwanted):
            codes = codes[~np.isin(codes, unwanted)]
        order, starts = self._by_code()
        codes = codes[codes < len(starts) - 1]  # results numbered since have no vector yet
        first = starts[codes]
        counts = starts[codes + 1] - first
        if not len(counts) or counts.max() <= 1:  # one image per result, as most catalogues
            return np.unique(order[first[counts == 1]])
        first, counts = first[counts > 0], counts[counts > 0]
        ends = np.cumsum(counts)
        return np.unique(order[np.arange(ends[-1]) + np.repeat(first - ends + counts, counts)])

    def clusters_of(self, faiss) -> tuple[np.ndarray, np.ndarray]:
        """The IVF list of each position's vector, and the size of each list, read from the index."""
        cached = self.clusters
        if cached is None:
            lists, nlist = self.index.invlists, self.nlist
            sizes = np.fromiter((lists.list_size(n) for n in range(nlist)), dtype=np.int64, count=nlist)
            ids, offset = np.empty(int(sizes.sum()), dtype=np.int64), 0
            for n in np.flatnonzero(sizes).tolist():
                size = int(sizes[n])
                ids[offset : offset + size] = faiss.rev_swig_ptr(lists.get_ids(n), size)
                offset += size
            clusters = np.empty(len(self.ids), dtype=np.int32)
            clusters[np.searchsorted(self.ids, ids)] = np.repeat(np.arange(nlist, dtype=np.int32), sizes)
            cached = self.clusters = (clusters, sizes)
        return cached


@dataclass
class _Filter:
    """Which vectors a search may return: all but ``banned`` results, or those at ``positions``.

    What a search derives from its filter is kept here, for its next call (query expansion, then
    the ranking): one filter serves one search.
    """

    count: int
    banned: set[int] = field(default_factory=set)
    positions: np.ndarray | None = None  # sorted positions in the index's ids; None: no restriction
    vectors: np.ndarray | None = None  # the allowed vectors, gathered
    per_cluster: np.ndarray | None = None  # how many allowed vectors each IVF list holds
    gather: bool = False  # compared one by one (exact) rather than scanned by FAISS
    bitmap: np.ndarray | None = None  # kept alive while FAISS reads it
    selector: object = None


@dataclass
class _Rows:
    """The rows of one index read for a build: ids, result ids, and raw vectors in pages (the last
    one filled up to ``filled``)."""

    ids: list = field(default_factory=list)
    result_ids: list = field(default_factory=list)
    pages: list = field(default_factory=list)
    filled: int = 0
    newest: datetime | None = None

    def extend(self, ids: Sequence[int], result_ids: Sequence[str], vectors: np.ndarray | Sequence, newest: datetime | None) -> None:
        """Keep these rows; ``vectors``: one per id, as an array or as the stored bytes (copied into
        the pages a page at a time, never joined all at once)."""
        self.ids.append(np.asarray(ids, dtype=np.int64))
        self.result_ids += result_ids
        start = 0
        while start < len(vectors):
            if not self.pages or self.filled == len(self.pages[-1]):
                self._new_page(vectors)
            part = vectors[start : start + min(len(self.pages[-1]) - self.filled, PAGE)]
            part = part if isinstance(part, np.ndarray) else _matrix(part)
            self.pages[-1][self.filled : self.filled + len(part)] = part
            self.filled += len(part)
            start += len(part)
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest

    def _new_page(self, vectors: np.ndarray | Sequence) -> None:
        held = sum(map(len, self.pages))
        rows = min(max(PAGE, held // 4), ADD_BLOCK - held) if held < ADD_BLOCK else ADD_BLOCK
        width = vectors.shape[1] if isinstance(vectors, np.ndarray) else memoryview(vectors[0]).nbytes // 4
        self.pages.append(np.empty((rows, width), dtype=np.float32))
        self.filled = 0

    @classmethod
    def read(cls, rows) -> _Rows:
        """The ready ``rows`` of one index, a chunk at a time (the last one gone on return)."""
        read = cls()
        for chunk in row_chunks(rows.values_list("id", "result_id", "vector"), REBUILD_CHUNK):
            read.extend([c[0] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk], None)
        return read

    def take_pages(self) -> list[np.ndarray]:
        """The raw vectors, page by page, handed over (none kept here); a last page of fewer than
        ``MIN_PAGE`` rows is joined to the one before (a block of ``ADD_BLOCK`` rows is then
        two pages, joined when added)."""
        pages, self.pages = self.pages, []
        if pages:  # a copy of its rows: the page's room left unused is given back
            pages[-1] = pages[-1][: self.filled].copy()
        if len(pages) > 1 and len(pages[-1]) < MIN_PAGE:
            pages[-2:] = [np.concatenate(pages[-2:])]
        return pages

    def __len__(self) -> int:
        return len(self.result_ids)


class _ReadWriteLock:
    """Many searches at once, or one change: a FAISS index must not change while it is searched.

    Writers go first: once one waits, new searches wait too, so a stream of searches cannot hold
    off a worker's update for ever.
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writers_waiting = 0
        self._writing = False

    @contextmanager
    def reading(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self):
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class FaissBackend(BaseBackend):
    """Approximate search with a FAISS IVF index per searchable model, persisted to ``PATH``.

    ``OPTIONS``: ``PATH`` (folder of the index files; default ``<BASE_DIR>/visual_search_index/<alias>``),
    ``NPROBE`` (clusters compared per query: more is slower and closer to exact; default 16),
    ``LISTS`` (clusters; default ``2 * sqrt(n)``, chosen at each build), ``GATHER_MAX`` and
    ``FILTER_DEPTH`` (restricted searches, below).

    A search with ``restrict_to`` (a filter, the visibility rule) maps the allowed result ids to
    the index's vectors (vectorised: one NumPy parse when the ids are primary keys), then:

    * allowing at most ``GATHER_MAX`` vectors (default 20,000), and few against the clusters that
      hold them, it is exact: those vectors are gathered from the index once per search and compared
      with the query (FAISS's kernel);
    * otherwise FAISS scans the clusters nearest the query *that hold allowed vectors* (a bitmap
      skips the others, and the vectors not allowed, before computing any distance), in rounds: the
      first as deep as ``FILTER_DEPTH`` (default 3) times the allowed vectors an unrestricted search
      compares, the second as deep again, each next one twice as deep, until a round changes none of
      the first 10 results. Allowed rows that cluster together (a category), even far from the
      query, are thus followed until found. Once the depth reaches half the allowed vectors, every
      cluster holding one is scanned: exact.

    Needs ``pip install django-visual-search[ann]``.
    """

    reads_rows = False
    option_names = ("NPROBE", "LISTS", "GATHER_MAX", "FILTER_DEPTH", "PATH")
    store_names = ("index file", "index files", "from this machine's index folder")

    def __init__(self, alias: str = "default", **options):
        super().__init__(alias, **options)
        self.faiss = _faiss()
        self.nprobe = int(options.get("NPROBE", 16))
        self.lists = options.get("LISTS")
        self.gather_max = int(options.get("GATHER_MAX", GATHER_MAX))
        self.filter_depth = float(options.get("FILTER_DEPTH", FILTER_DEPTH))
        self.gather_cost, self.scan_share = GATHER_COST, SCAN_SHARE
        self._path = options.get("PATH")
        self._indexes: dict[tuple[int, str], _Index] = {}
        self._lock = threading.RLock()  # loading, building and applying changes: one thread at a time
        self._rw = _ReadWriteLock()  # searches against changes to an index in place
        self._building: dict[tuple[int, str], _Rows] | None = None

    @property
    def path(self) -> Path:
        if self._path:
            return Path(self._path)
        return Path(getattr(django_settings, "BASE_DIR", None) or os.getcwd()) / "visual_search_index" / self.alias

    # -- the contract --------------------------------------------------------------------------

    def add(self, embeddings: Sequence) -> None:
        """Apply these rows to the indexes loaded here; other processes read them from the rows."""
        groups: dict[tuple[int, str], list] = {}
        for row in embeddings:
            if row.vector is not None:
                groups.setdefault((row.result_type_id, row.fingerprint), []).append(row)
        with self._lock:
            for key, rows in groups.items():
                vectors = _matrix([row.vector for row in rows])
                if self._building is not None:
                    newest = max(row.updated_at for row in rows)
                    self._building.setdefault(key, _Rows()).extend([row.pk for row in rows], [row.result_id for row in rows], vectors, newest)
                    continue
                state = self._indexes.get(key)
                if state is not None and state.index is not None:
                    self._put(state, np.asarray([row.pk for row in rows], dtype=np.int64), [row.result_id for row in rows], vectors)

    def remove(self, embedding_ids: Collection[int]) -> None:
        dead = np.asarray(sorted(int(i) for i in embedding_ids), dtype=np.int64)
        with self._lock:
            for state in self._indexes.values():
                self._drop(state, dead)

    def reset(self) -> None:
        """Forget the indexes in memory; the next search loads the file or builds from the rows."""
        with self._lock:
            self._indexes.clear()

    def expire(self) -> None:
        self.reset()  # memory only: the files stay

    def whitening_changed(self, result_type_id: int, fingerprint: str) -> None:
        """Forget the indexes in memory: the next search finds the file made with the old
        whitening unusable and builds a new one from the rows."""
        self.reset()

    def forget_fingerprints(self, keep: Collection[str]) -> int:
        """Delete this machine's index files (and their locks) of every fingerprint not in ``keep``.

        Only files named as this backend names them (``<result type>-<fingerprint>.faiss``) are
        touched, so the files of the versions in use or being built stay. Each machine has its own
        ``PATH``: run ``visual_search_versions prune`` on each to free them all.
        """
        keep = set(keep)
        removed = 0
        with self._lock:
            for key in [key for key in self._indexes if key[1] not in keep]:
                del self._indexes[key]
            if not self.path.is_dir():
                return 0
            for file in sorted(self.path.glob("*-*.faiss")):
                result_type, _, fingerprint = file.stem.partition("-")
                if not result_type.isdigit() or not fingerprint or fingerprint in keep:
                    continue
                key = (int(result_type), fingerprint)
                with self._file_lock(key):  # not while a process still writes it
                    try:
                        file.unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass  # another process pruned it first
                self._file(key).with_suffix(".lock").unlink(missing_ok=True)
        return removed

    def rebuild(self, rows, *, progress=None) -> int:
        """Build every index from ``rows`` at once (clustering needs them all) and save the files.

        As :meth:`BaseBackend.rebuild` (``reset``, the rows in chunks, ``finish``), reading tuples
        rather than model instances: at a million rows those were a third of the build.
        """
        with self._lock:
            self.reset()
            self._building = {}
            try:
                count = self._read_building(rows, progress)
                self.finish()
                return count
            finally:
                self._building = None

    def _read_building(self, rows, progress) -> int:
        """Read ``rows`` into ``_building`` by index; the last chunk read is gone on return, before
        the builds (at 6,000 rows a third of the vectors, held through them)."""
        fields = ("pk", "result_type_id", "fingerprint", "result_id", "updated_at", "vector")
        count = 0
        for chunk in row_chunks(rows.order_by("pk").values_list(*fields), REBUILD_CHUNK):
            groups: dict[tuple[int, str], list] = {}
            for row in chunk:
                if row[5] is not None:
                    groups.setdefault((row[1], row[2]), []).append(row)
            for key, group in groups.items():
                self._building.setdefault(key, _Rows()).extend(
                    [r[0] for r in group], [r[3] for r in group], [r[5] for r in group], max(r[4] for r in group)
                )
            count += len(chunk)
            if progress:
                progress(len(chunk))
        return count

    def finish(self) -> None:
        building = self._building or {}
        for result_type_id, fingerprint in list(building):
            rows = building.pop((result_type_id, fingerprint))  # freed once its index is built
            whitening, stale = stored_whitening(result_type_id, fingerprint, len(rows))
            state = self._build(whitening, rows, rows.newest)
            state.outgrown = stale
            with self._file_lock((result_type_id, fingerprint)):
                self._save((result_type_id, fingerprint), state)
            self._indexes[(result_type_id, fingerprint)] = state

    @contextmanager
    def space(self, result_type_id: int, fingerprint: str):
        """The index of this model, held for reading (no change applies to it meanwhile)."""
        state = self._refresh(result_type_id, fingerprint)
        if state.index is None or state.index.ntotal == 0:
            yield EmptySpace()
            return
        with self._rw.reading():
            yield _Space(self, state)

    # -- searching -----------------------------------------------------------------------------

    def _filter(self, state: _Index, restrict_to, exclude) -> _Filter:
        unwanted = state.result_codes_of(exclude) if len(exclude) else _NONE
        unwanted = unwanted[unwanted >= 0]
        if restrict_to is None:
            # A few excluded results (find_similar's own object) are dropped from the ranking.
            return _Filter(count=int(state.index.ntotal), banned=set(unwanted.tolist()))
        wanted = state.result_codes_of(restrict_to)
        positions = state.positions_of(wanted[wanted >= 0], unwanted)
        return _Filter(count=len(positions), positions=positions)

    def _nearest(self, state: _Index, query: np.ndarray, k: int, allowed: _Filter, exact: bool, with_vectors: bool) -> Neighbours:
        k = min(k, allowed.count)
        if k <= 0:
            return Neighbours()
        if allowed.positions is None:
            return self._unrestricted(state, query, k, allowed, exact, with_vectors)
        if allowed.per_cluster is None:
            clusters, sizes = state.clusters_of(self.faiss)
            allowed.per_cluster = np.bincount(clusters[allowed.positions], minlength=state.nlist)
            scanned = int(sizes[allowed.per_cluster > 0].sum())
            allowed.gather = allowed.count <= self.gather_max and allowed.count * self.gather_cost <= scanned
        if allowed.gather:
            return self._gathered(state, query, k, allowed, with_vectors)
        return self._scanned(state, query, k, allowed, exact, with_vectors)

    def _unrestricted(self, state: _Index, query: np.ndarray, k: int, allowed: _Filter, exact: bool, with_vectors: bool) -> Neighbours:
        """``NPROBE`` clusters (all when ``exact``), then the banned results dropped."""
        params = self.faiss.SearchParametersIVF(nprobe=state.nlist if exact else min(self.nprobe, state.nlist))
        scores, found = state.index.search(query[None], k, params=params)
        keep = found[0] >= 0
        scores, found = scores[0][keep], found[0][keep]
        # Every vector was compared when all clusters were; with fewer than k rows left after
        # dropping excluded results, only if the scan itself came back short.
        complete = params.nprobe >= state.nlist and (len(found) < k or k >= allowed.count)
        if allowed.banned:
            keep = ~np.isin(state.codes_of(found), list(allowed.banned))
            scores, found = scores[keep], found[keep]
        return self._neighbours(state, found, scores, with_vectors, complete)

    def _gathered(self, state: _Index, query: np.ndarray, k: int, allowed: _Filter, with_vectors: bool) -> Neighbours:
        """Exact: the query against each allowed vector, gathered once per search."""
        faiss = self.faiss
        if allowed.vectors is None:
            allowed.vectors = state.index.reconstruct_batch(state.ids[allowed.positions])
        vectors = allowed.vectors
        scores = np.empty(len(vectors), dtype=np.float32)  # FAISS's kernel, one thread (a BLAS call may wake others)
        faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(query), faiss.swig_ptr(vectors), vectors.shape[1], len(vectors))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        codes = state.codes[allowed.positions[top]].tolist()
        return Neighbours([state.result_ids[c] for c in codes], scores[top], vectors[top] if with_vectors else None, exact=True)

    def _scanned(self, state: _Index, query: np.ndarray, k: int, allowed: _Filter, exact: bool, with_vectors: bool) -> Neighbours:
        """FAISS scans the clusters nearest the query that hold allowed vectors, skipping the others
        and, in those, the vectors not allowed before computing any distance.

        Not ``exact``: in rounds, the first ``FILTER_DEPTH`` times as deep as an unrestricted search
        (in allowed vectors), the second as deep again, each next one twice the depth before, until
        a round changes none of the first ``SHOWN`` results; once the depth reaches ``SCAN_SHARE``
        of the allowed vectors, the last round takes every cluster left (exact).
        """
        faiss, index, nlist = self.faiss, state.index, state.nlist
        if allowed.selector is None:
            bits = np.zeros(int(state.ids[-1]) + 1, dtype=bool)
            bits[state.ids[allowed.positions]] = True
            allowed.bitmap = np.packbits(bits, bitorder="little")
            allowed.selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(allowed.bitmap))
        similarity, lists = index.quantizer.search(query[None], nlist)  # every cluster, nearest first
        holding = allowed.per_cluster[lists[0]] > 0
        similarity, lists = similarity[0][holding], lists[0][holding]
        total = len(lists)
        ends = [total]
        if not exact:
            covered = np.cumsum(allowed.per_cluster[lists])
            depth = self.filter_depth * max(self.nprobe * index.ntotal / nlist, k)
            ends = []
            while depth < self.scan_share * allowed.count and (not ends or ends[-1] < total):
                ends.append(min(total, int(np.searchsorted(covered, depth)) + 1))
                depth *= 2
            ends.append(total)
        shown = min(k, SHOWN)  # the results a round must not change
        scores = found = None
        start = 0
        for end in ends:
            if end <= start:
                continue
            more_scores, more = self._preassigned(index, query, k, lists[start:end], similarity[start:end], allowed.selector)
            start = end
            if found is None:  # the first round: never trusted alone
                scores, found = more_scores, more
                continue
            merged_scores, merged = np.concatenate([scores, more_scores]), np.concatenate([found, more])
            order = np.argsort(-merged_scores, kind="stable")[:k]
            changed = bool((order[:shown] >= len(found)).any())
            scores, found = merged_scores[order], merged[order]
            if not changed:
                break
        return self._neighbours(state, found, scores, with_vectors, start >= total)

    def _preassigned(self, index, query: np.ndarray, k: int, lists: np.ndarray, similarity: np.ndarray, selector):
        """The ``k`` allowed vectors nearest ``query`` in these ``lists`` (best first)."""
        faiss = self.faiss
        params = faiss.SearchParametersIVF(nprobe=len(lists))
        params.sel = selector
        lists = np.ascontiguousarray(lists[None], dtype=np.int64)
        similarity = np.ascontiguousarray(similarity[None], dtype=np.float32)
        scores, found = np.empty((1, k), dtype=np.float32), np.empty((1, k), dtype=np.int64)
        index.search_preassigned_c(
            1, faiss.swig_ptr(query), k, faiss.swig_ptr(lists), faiss.swig_ptr(similarity),
            faiss.swig_ptr(scores), faiss.swig_ptr(found), False, params,
        )
        keep = found[0] >= 0
        return scores[0][keep], found[0][keep]

    def _neighbours(self, state: _Index, found: np.ndarray, scores: np.ndarray, with_vectors: bool, complete: bool) -> Neighbours:
        codes = state.codes_of(found).tolist()
        vectors = state.index.reconstruct_batch(found) if with_vectors and len(found) else None
        return Neighbours([state.result_ids[c] for c in codes], scores, vectors, exact=complete)

    # -- keeping the index in step with the rows -----------------------------------------------

    def _refresh(self, result_type_id: int, fingerprint: str) -> _Index:
        key = (result_type_id, fingerprint)
        state = self._indexes.get(key)
        if state is not None and not due(state.checked):
            return state
        now = Snapshot.read(result_type_id, fingerprint)
        with self._lock:
            state = self._indexes.get(key)
            on_disk = self._stat(key)
            if state is not None and state.signature == (now.count, now.newest, now.stamp, on_disk) and now.settled:
                state.checked = time.monotonic()
                return state
            if state is None or state.stamp != now.stamp or (on_disk is not None and on_disk != state.file):
                state = self._load(key, now.stamp)
            if state is None or (state.index is None and now.count) or self._outgrown(state, now.count):
                state = self._build_from_rows(key, now, on_disk)
            state = self._indexes[key] = self._catch_up(state, now)
            state.outgrown = now.outgrown
            state.signature = (now.count, now.newest, now.stamp, self._stat(key))
            state.checked = time.monotonic()
            return state

    def _outgrown(self, state: _Index, n: int) -> bool:
        """The clusters were learned on half the catalogue or less: learn them again."""
        return n >= MIN_CLUSTERED and n > 2 * state.trained_on

    def _catch_up(self, state: _Index, now: Snapshot) -> _Index:
        """Apply the rows written since ``state.newest`` and forget the rows gone since."""
        if state.newest is not None and now.newest is not None and now.newest > state.newest - COMMIT_SKEW:
            changed = now.changed_since(state.newest)
            for chunk in row_chunks(changed.values_list("id", "result_id", "vector"), 2000):
                ids = np.asarray([c[0] for c in chunk], dtype=np.int64)
                self._put(state, ids, [c[1] for c in chunk], _matrix([c[2] for c in chunk]))
        if len(state.ids) != now.count:
            alive = np.fromiter(now.rows.values_list("id", flat=True).iterator(), dtype=np.int64)
            self._drop(state, state.ids[~np.isin(state.ids, alive)])
        state.newest = now.newest if state.newest is None or now.newest is None else max(state.newest, now.newest)
        return state

    def _put(self, state: _Index, ids: np.ndarray, result_ids: list[str], vectors: np.ndarray) -> None:
        """Add or replace the vectors of these ids."""
        ids, first = np.unique(ids[::-1], return_index=True)  # a row twice: keep its last version
        result_ids = [result_ids[::-1][i] for i in first]
        transformed = state.transform(vectors[::-1][first])
        codes = state.add_results(result_ids)
        keep = ~np.isin(state.ids, ids)
        all_ids = np.concatenate([state.ids[keep], ids])
        order = np.argsort(all_ids, kind="stable")
        with self._rw.writing():
            state.index.remove_ids(ids)
            state.index.add_with_ids(transformed, ids)
            state.ids, state.codes = all_ids[order], np.concatenate([state.codes[keep], codes])[order]
            state.changed()

    def _drop(self, state: _Index, dead: np.ndarray) -> None:
        if state.index is None or not len(dead):
            return
        keep = ~np.isin(state.ids, dead)
        with self._rw.writing():
            state.index.remove_ids(np.ascontiguousarray(dead, dtype=np.int64))
            state.ids, state.codes = state.ids[keep], state.codes[keep]
            state.changed()

    # -- building, saving, loading -------------------------------------------------------------

    def _build_from_rows(self, key, now: Snapshot, seen_on_disk) -> _Index:
        """Cluster every row's vector; under the file lock, so that one process builds and saves."""
        with self._file_lock(key):
            if seen_on_disk != self._stat(key):  # another process built while we waited
                loaded = self._load(key, now.stamp)
                if loaded is not None:
                    return loaded
            state = self._build(now.whitening, _Rows.read(now.rows), now.newest)
            try:
                self._save(key, state)
            except OSError as exc:
                # A full disk or a read-only folder must not fail the search that built it (a 500
                # for each customer, clustering again each time): it answers from memory.
                logger.warning(
                    "Visual search could not save the FAISS index in %s (%s); it is kept in this process's "
                    "memory, and each other process builds its own until there is room: free disk space "
                    "or fix the folder's permissions, then run `manage.py visual_search_rebuild_index`.",
                    self.path, exc,
                )
        return state

    def _build(self, whitening, rows: _Rows, newest) -> _Index:
        """Cluster ``rows`` (consumed: their pages are whitened in place, and freed once added)
        into a new index.

        At the peak the vectors are held once, and besides either the sample the clusters are
        learned from (all of them up to ``TRAIN_PER_LIST`` rows per cluster: 10,000 rows by default,
        a tenth of them at a million) or the block being added (all of them up to ``ADD_BLOCK``);
        FAISS's own copy grows as the blocks it is given are freed.
        """
        start = time.perf_counter()
        state = _Index(whitening=whitening.arrays() if whitening is not None else None, newest=newest)
        state.stamp = whitening.updated_at.isoformat() if whitening is not None else None
        if not len(rows):
            return state
        ids = np.concatenate(rows.ids)
        codes = state.add_results(rows.result_ids)
        # A row read twice (changed while the rows were read) keeps its last vector.
        order = np.argsort(ids, kind="stable")
        last = np.r_[ids[order][1:] != ids[order][:-1], True]
        keep = np.zeros(len(ids), dtype=bool)
        keep[order[last]] = True
        state.ids, state.codes = ids[order[last]], codes[order[last]]
        state.trained_on = len(state.ids)
        pages = rows.take_pages()
        for n in range(len(pages)):  # whitened, unit length
            pages[n] = _transformed(pages[n], state.transform)
        nlist = self._nlist(len(state.ids))
        faiss = self.faiss
        dims = pages[0].shape[1]
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dims), dims, nlist, faiss.METRIC_INNER_PRODUCT)
        clustering = time.perf_counter()
        sample = _sample(pages, keep, nlist * TRAIN_PER_LIST if nlist > 1 else len(ids))
        index.train(sample)
        learned_from = len(sample)
        del sample
        clustering, adding = time.perf_counter() - clustering, time.perf_counter()
        # A hash table from id to vector: remove_ids without a full scan, and reconstruct for QE.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        offset = 0
        for block in _blocks(pages, len(ids)):
            part = slice(offset, offset + len(block))
            offset += len(block)
            mask = keep[part]
            index.add_with_ids(block if mask.all() else np.ascontiguousarray(block[mask]), np.ascontiguousarray(ids[part][mask]))
            del block
        state.index = index
        logger.info(
            "FAISS index of %s vectors built in %.1f s: %s clusters learned from %s vectors in %.1f s, vectors added in %.1f s",
            len(state.ids), time.perf_counter() - start, nlist, learned_from, clustering, time.perf_counter() - adding,
        )
        return state

    def _nlist(self, n: int) -> int:
        if self.lists:
            return max(1, min(int(self.lists), n))
        if n < MIN_CLUSTERED:
            return 1
        return max(1, min(int(2 * math.sqrt(n)), n // 39))

    def _file(self, key) -> Path:
        return self.path / f"{key[0]}-{key[1]}.faiss"

    def _stat(self, key) -> tuple | None:
        try:
            st = os.stat(self._file(key))
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextmanager
    def _file_lock(self, key):
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self._file(key).with_suffix(".lock")
        try:
            handle = open(lock, "a")
        except PermissionError:  # made by another user (a rebuild run as root): a shared lock works read-only
            handle = open(lock)
        with handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _save(self, key, state: _Index) -> None:
        """Write the index and its id maps to one file, under a temporary name, then rename it."""
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = None
        try:
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".tmp-", suffix=".faiss", delete=False) as handle:
                temporary = handle.name
                self._write(handle, state)
                handle.flush()
                os.fsync(handle.fileno())
            # NamedTemporaryFile makes it 0600: after a rebuild run by a deploy user or root, the web
            # processes could not read the index. Made as open() would make it, by the umask.
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, self._file(key))
        except BaseException:
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)
            raise
        state.file = self._stat(key)

    def _write(self, handle, state: _Index) -> None:
        meta = {
            "format": FORMAT,
            "stamp": state.stamp,
            "newest": state.newest.isoformat() if state.newest is not None else None,
            "trained_on": state.trained_on,
            "whitening": state.whitening is not None,
        }
        for blob in (json.dumps(meta).encode(), json.dumps(state.result_ids).encode()):
            np.save(handle, np.frombuffer(blob, dtype=np.uint8))
        np.save(handle, state.ids)
        np.save(handle, state.codes)
        if state.whitening is not None:
            np.save(handle, state.whitening[0])
            np.save(handle, state.whitening[1])
        if state.index is not None:
            self.faiss.write_index(state.index, self.faiss.PyCallbackIOWriter(handle.write))

    def _load(self, key, stamp: str | None) -> _Index | None:
        """The index saved for ``key``, or None when there is none or it was built for another whitening."""
        try:
            with open(self._file(key), "rb") as handle:
                return self._read(handle, stamp)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, RuntimeError, EOFError) as exc:
            logger.warning("Ignoring the unreadable FAISS index %s (%s); building it again", self._file(key), exc)
            return None

    def _read(self, handle, stamp: str | None) -> _Index | None:
        st = os.fstat(handle.fileno())  # of the file opened: the path may be replaced meanwhile
        meta = json.loads(np.load(handle).tobytes())
        if meta.get("format") != FORMAT or meta.get("stamp") != stamp or not comparable(meta["newest"]):
            return None
        state = _Index(stamp=stamp, trained_on=meta["trained_on"], file=(st.st_ino, st.st_mtime_ns, st.st_size))
        state.newest = datetime.fromisoformat(meta["newest"]) if meta["newest"] else None
        state.result_ids = json.loads(np.load(handle).tobytes())
        state.result_codes = {r: n for n, r in enumerate(state.result_ids)}
        state.ids, state.codes = np.load(handle), np.load(handle)
        if meta["whitening"]:
            state.whitening = (np.load(handle), np.load(handle))
        if len(state.ids):
            state.index = self.faiss.read_index(self.faiss.PyCallbackIOReader(handle.read))
        return state



@dataclass(frozen=True)
class _Space:
    """One search's view of a FAISS index (see :class:`visual_search.ranking.VectorSpace`)."""

    backend: FaissBackend
    state: _Index

    @property
    def outgrown(self) -> bool:
        return self.state.outgrown

    def transform(self, vector: np.ndarray) -> np.ndarray:
        return self.state.transform(vector[None])[0]

    def allow(self, restrict_to, exclude) -> _Filter:
        return self.backend._filter(self.state, restrict_to, exclude)

    def result_vectors(self, result_ids) -> dict[str, np.ndarray]:
        state = self.state
        codes = state.result_codes_of(result_ids)
        positions = state.positions_of(codes[codes >= 0])
        if not len(positions):
            return {}
        vectors = state.index.reconstruct_batch(state.ids[positions])
        return group_by_result([state.result_ids[c] for c in state.codes[positions].tolist()], vectors)

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False) -> Neighbours:
        return self.backend._nearest(self.state, np.ascontiguousarray(query, dtype=np.float32), k, allowed, exact, with_vectors)
