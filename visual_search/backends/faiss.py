"""Approximate nearest-neighbour search in process memory (FAISS IVF-Flat), for big catalogues.

Chosen by measurement (docs/performance.md, "FAISS IVF against exact NumPy"): on 2 shared cores an IVF index of 1M vectors was
built in 1 to 3 minutes (64 s from a matrix, 201 s by ``visual_search_rebuild_index`` from the rows),
where HNSW graphs (FAISS or usearch) took 4 to 6 minutes for 100k, for the same recall and speed. IVF-Flat keeps the vectors themselves (no lossy compression): it only chooses
which ``NPROBE`` of its ``nlist`` clusters to compare the query with, then ranks them exactly.

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
from collections.abc import Collection, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ..batching import chunked
from ..models import Whitening
from ..ranking import Neighbours, transform
from .base import BaseBackend, EmptySpace, group_by_result
from .rows import COMMIT_SKEW, ResultCodes, Snapshot, due

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


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImproperlyConfigured(
            "visual_search.backends.faiss.FaissBackend needs FAISS: pip install django-visual-search[ann]"
        ) from exc
    return faiss


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
    file: tuple | None = None  # (inode, mtime_ns, size) of the file this index was loaded from or saved to
    signature: tuple | None = None
    checked: float = 0.0

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(transform(vectors, self.whitening), dtype=np.float32)

    def codes_of(self, found: np.ndarray) -> np.ndarray:
        return self.codes[np.searchsorted(self.ids, found)]

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.index is not None else 0


@dataclass
class _Filter:
    """Which vectors a search may return: all but ``banned`` results, or those in a bitmap."""

    count: int
    banned: set[int] = field(default_factory=set)
    bitmap: np.ndarray | None = None  # kept alive while FAISS reads it
    selector: object = None


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
    ``NPROBE`` (clusters compared per query: more is slower and closer to exact; default 16) and
    ``LISTS`` (clusters; default ``2 * sqrt(n)``, chosen at each build).

    A ``restrict_to`` that allows a share *s* of the vectors is applied while scanning (FAISS skips
    the others before computing a distance) over ``NPROBE / s`` clusters, so that as many allowed
    vectors are compared as without a filter; when that reaches every cluster the search is exact
    over the allowed vectors. A selective filter thus still gets a full top-k.
    Needs ``pip install django-visual-search[ann]``.
    """

    reads_rows = False

    def __init__(self, alias: str = "default", **options):
        super().__init__(alias, **options)
        self.faiss = _faiss()
        self.nprobe = int(options.get("NPROBE", 16))
        self.lists = options.get("LISTS")
        self._path = options.get("PATH")
        self._indexes: dict[tuple[int, str], _Index] = {}
        self._lock = threading.RLock()  # loading, building and applying changes: one thread at a time
        self._rw = _ReadWriteLock()  # searches against changes to an index in place
        self._building: dict[tuple[int, str], list] | None = None

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
                if self._building is not None:
                    self._building.setdefault(key, []).extend(
                        (row.pk, row.result_id, row.updated_at, row.array) for row in rows
                    )
                    continue
                state = self._indexes.get(key)
                if state is not None and state.index is not None:
                    vectors = np.stack([row.array for row in rows])
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

    def rebuild(self, rows, *, progress=None) -> int:
        """Build every index from ``rows`` at once (clustering needs them all) and save the files."""
        with self._lock:
            self._building = {}
            try:
                return super().rebuild(rows, progress=progress)
            finally:
                self._building = None

    def finish(self) -> None:
        for (result_type_id, fingerprint), items in (self._building or {}).items():
            whitening = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
            ids = np.fromiter((i[0] for i in items), dtype=np.int64, count=len(items))
            result_ids, newest = [i[1] for i in items], max(i[2] for i in items)
            vectors = np.stack([i[3] for i in items])
            items.clear()  # the vectors are in one matrix now: free the row copies before clustering
            state = self._build(whitening, ids, result_ids, vectors, newest)
            del vectors
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

    def _probes(self, state: _Index, allowed: _Filter) -> int:
        """``NPROBE`` clusters, widened by a filter's selectivity (all of them: exact search)."""
        if allowed.bitmap is None:
            return min(self.nprobe, state.nlist)
        share = allowed.count / max(1, state.index.ntotal)
        return min(state.nlist, math.ceil(self.nprobe / share))

    def _filter(self, state: _Index, restrict_to, exclude) -> _Filter:
        unwanted = {state.result_codes[r] for r in map(str, exclude) if r in state.result_codes}
        if restrict_to is None:
            # A few excluded results (find_similar's own object) are dropped from the ranking.
            return _Filter(count=int(state.index.ntotal), banned=unwanted)
        # One dict lookup per allowed result: at a million results this loop is most of the cost.
        codes = state.result_codes
        wanted = np.fromiter((codes.get(r, -1) for r in map(str, restrict_to)), dtype=np.int64, count=len(restrict_to))
        wanted = wanted[wanted >= 0]
        if unwanted:
            wanted = wanted[~np.isin(wanted, np.fromiter(unwanted, dtype=np.int64))]
        mask = np.isin(state.codes, wanted)
        allowed_ids = state.ids[mask]
        if not len(allowed_ids):
            return _Filter(count=0)
        # FAISS skips ids outside the bitmap while it scans, before computing any distance.
        bits = np.zeros(int(state.ids[-1]) + 1, dtype=bool)
        bits[allowed_ids] = True
        bitmap = np.packbits(bits, bitorder="little")
        selector = self.faiss.IDSelectorBitmap(len(bits), self.faiss.swig_ptr(bitmap))
        return _Filter(count=len(allowed_ids), bitmap=bitmap, selector=selector)

    def _nearest(self, state: _Index, query: np.ndarray, k: int, allowed: _Filter, exact: bool, with_vectors: bool) -> Neighbours:
        k = min(k, allowed.count)
        if k <= 0:
            return Neighbours()
        params = self.faiss.SearchParametersIVF(nprobe=state.nlist if exact else self._probes(state, allowed))
        if allowed.selector is not None:
            params.sel = allowed.selector
        scores, found = state.index.search(query[None], k, params=params)
        keep = found[0] >= 0
        scores, found = scores[0][keep], found[0][keep]
        # Every allowed vector was compared when all clusters were; with fewer than k rows left
        # after dropping excluded results, only if the scan itself came back short.
        complete = params.nprobe >= state.nlist and (len(found) < k or k >= allowed.count)
        if allowed.banned:
            keep = ~np.isin(state.codes_of(found), list(allowed.banned))
            scores, found = scores[keep], found[keep]
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
            if state is not None and state.signature == (now.count, now.newest, now.stamp, on_disk):
                state.checked = time.monotonic()
                return state
            if state is None or state.stamp != now.stamp or (on_disk is not None and on_disk != state.file):
                state = self._load(key, now.stamp)
            if state is None or (state.index is None and now.count) or self._outgrown(state, now.count):
                state = self._build_from_rows(key, now, on_disk)
            state = self._indexes[key] = self._catch_up(state, now)
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
            for chunk in chunked(changed.values_list("id", "result_id", "vector").iterator(chunk_size=2000), 2000):
                ids = np.asarray([c[0] for c in chunk], dtype=np.int64)
                vectors = np.stack([np.frombuffer(bytes(c[2]), dtype=np.float32) for c in chunk])
                self._put(state, ids, [c[1] for c in chunk], vectors)
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
        codes = np.asarray([state.code(r) for r in result_ids], dtype=np.int64)
        keep = ~np.isin(state.ids, ids)
        all_ids = np.concatenate([state.ids[keep], ids])
        order = np.argsort(all_ids, kind="stable")
        with self._rw.writing():
            state.index.remove_ids(ids)
            state.index.add_with_ids(transformed, ids)
            state.ids, state.codes = all_ids[order], np.concatenate([state.codes[keep], codes])[order]

    def _drop(self, state: _Index, dead: np.ndarray) -> None:
        if state.index is None or not len(dead):
            return
        keep = ~np.isin(state.ids, dead)
        with self._rw.writing():
            state.index.remove_ids(np.ascontiguousarray(dead, dtype=np.int64))
            state.ids, state.codes = state.ids[keep], state.codes[keep]

    # -- building, saving, loading -------------------------------------------------------------

    def _build_from_rows(self, key, now: Snapshot, seen_on_disk) -> _Index:
        """Cluster every row's vector; under the file lock, so that one process builds and saves."""
        with self._file_lock(key):
            if seen_on_disk != self._stat(key):  # another process built while we waited
                loaded = self._load(key, now.stamp)
                if loaded is not None:
                    return loaded
            ids, result_ids, vectors = [], [], []
            for chunk in chunked(now.rows.values_list("id", "result_id", "vector").iterator(chunk_size=2000), 2000):
                ids += [c[0] for c in chunk]
                result_ids += [c[1] for c in chunk]
                vectors.append(np.stack([np.frombuffer(bytes(c[2]), dtype=np.float32) for c in chunk]))
            matrix = np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
            state = self._build(now.whitening, np.asarray(ids, dtype=np.int64), result_ids, matrix, now.newest)
            self._save(key, state)
        return state

    def _build(self, whitening, ids: np.ndarray, result_ids: list[str], vectors: np.ndarray, newest) -> _Index:
        start = time.perf_counter()
        state = _Index(whitening=whitening.arrays() if whitening is not None else None, newest=newest, trained_on=len(ids))
        state.stamp = whitening.updated_at.isoformat() if whitening is not None else None
        if not len(ids):
            return state
        ids, first = np.unique(ids, return_index=True)
        result_ids = [result_ids[i] for i in first]
        transformed = np.concatenate([state.transform(vectors[first[s : s + 50_000]]) for s in range(0, len(ids), 50_000)])
        nlist = self._nlist(len(ids))
        faiss = self.faiss
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(transformed.shape[1]), transformed.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        sample = transformed
        if len(ids) > nlist * TRAIN_PER_LIST:
            sample = transformed[np.sort(np.random.default_rng(0).choice(len(ids), nlist * TRAIN_PER_LIST, replace=False))]
        index.train(sample)
        # A hash table from id to vector: remove_ids without a full scan, and reconstruct for QE.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.add_with_ids(transformed, ids)
        state.index = index
        state.ids = ids
        state.codes = np.asarray([state.code(r) for r in result_ids], dtype=np.int64)
        logger.info("FAISS index of %s vectors built (%s clusters) in %.1f s", len(ids), nlist, time.perf_counter() - start)
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
        with open(self._file(key).with_suffix(".lock"), "a") as handle:
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
        if meta.get("format") != FORMAT or meta.get("stamp") != stamp:
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

    def transform(self, vector: np.ndarray) -> np.ndarray:
        return self.state.transform(vector[None])[0]

    def allow(self, restrict_to, exclude) -> _Filter:
        return self.backend._filter(self.state, restrict_to, exclude)

    def result_vectors(self, result_ids) -> dict[str, np.ndarray]:
        state = self.state
        wanted = [state.result_codes[r] for r in map(str, result_ids) if r in state.result_codes]
        ids = state.ids[np.isin(state.codes, wanted)]
        if not len(ids):
            return {}
        return group_by_result([state.result_ids[c] for c in state.codes_of(ids).tolist()], state.index.reconstruct_batch(ids))

    def nearest(self, query, k, allowed, *, exact=False, with_vectors=False) -> Neighbours:
        return self.backend._nearest(self.state, np.ascontiguousarray(query, dtype=np.float32), k, allowed, exact, with_vectors)
