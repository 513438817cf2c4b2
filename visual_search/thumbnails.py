"""The small JPEGs of indexed images that result cards and the admin show: named, made, remembered.

A thumbnail is saved beside its original, in the same storage, under ``FOLDER``, named by a hash of
the original's name, the size and the file's version (:func:`file_version`: on this machine's disk
its modification time; elsewhere the SHA-256 of its bytes, the checksum its index row holds), so a
changed image gets a new one. Which thumbnail an image has is remembered in Django's cache under a
key of the storage and the name.

For a bucket's files (a storage without local paths) the indexing task makes them (:class:`Writer`)
from the bytes it reads anyway, in the background, and asks the bucket nothing more; pages and
searches find them ready (:func:`url`, one cache round-trip for a page with :func:`remembered`; where
the cache forgot, the row's checksum names the file: one ``exists`` call), and make one on demand
for a file on the local disk, or one the task did not (indexed before this existed, a storage error,
another size).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from PIL import Image

from .conf import settings
from .embeddings.images import open_image, read_bytes
from .embeddings.images import checksum as sha256
from .exceptions import InvalidImage
from .logs import OccasionalWarning
from .tenants import in_current_schema, tenant_key

logger = logging.getLogger("visual_search")

FOLDER = "visual_search/thumbnails"
CACHE_PREFIX = "visual_search:thumbnail:"
FAILED = ""  # cached for an image with no thumbnail: its original is shown
# A thumbnail not made for a storage error (a bucket timing out, a connection reset) is tried again
# after this many seconds, not after the cache's TIMEOUT (often hours, or never with None): every
# card showed the full-size original until then. Not at once either: a storage that is down would
# cost each page of results one failing call per card.
RETRY_AFTER = 60
# A cache that is down fails each card's lookups: a page of 10 results logged 21 warnings, each
# search and page again (75 lines for four requests while Redis restarted). One warning per process
# this often says so; the others go to DEBUG.
CACHE_WARNING = OccasionalWarning(
    logger,
    "Thumbnail cache unavailable (%s): result cards still show thumbnails, each found in the storage "
    "meanwhile; check that the server of CACHES is running (said once a minute per process).",
)
# Uploads of one indexing call at a time: a bucket's PUTs overlap each other and the model's work.
WRITERS = 4


def url(storage: Storage, name: str, size: int, known: Mapping[str, str] | None = None,
        checksum: str | Callable[[], str] = "") -> str:
    """The URL of the thumbnail of the file ``name`` in ``storage``, made now if it has none yet;
    the original's URL when none can be made. ``known``: what :func:`remembered` found for a page;
    ``checksum``: the SHA-256 of the file's bytes where the caller knows it (its index row's), so a
    thumbnail the cache forgot is found without reading the original (see :func:`file_version`), or a
    function that finds it, called only then (a query for the row)."""
    key = cache_key(storage, name, size)
    made = known[key] if known is not None and key in known else _cache_call(cache.get, key)
    if made is None:
        made, remember_for = make(storage, name, size, checksum)
        _cache_call(cache.set, key, made, *remember_for)
    return storage.url(made or name)


def remembered(files: Iterable[tuple[Storage, str]], size: int) -> dict[str, str]:
    """What the cache remembers of the thumbnails of ``files`` (``(storage, name)`` pairs), by cache
    key, in one round-trip: a page of 100 rows made 100 calls to Redis. {} when the cache is down."""
    keys = list(dict.fromkeys(cache_key(storage, name, size) for storage, name in files))
    return (_cache_call(cache.get_many, keys) or {}) if keys else {}


def _found(checksum: Callable[[], str]) -> str:
    """What ``checksum`` finds; "" (the file is read) when it fails: a database that is down costs a read."""
    try:
        return checksum()
    except Exception:  # noqa: BLE001 - never a page's picture
        logger.debug("No checksum found for a thumbnail", exc_info=True)
        return ""


def _cache_call(method, *args):
    """A call to Django's cache that cannot fail a search: a cache that is down (Redis restarting)
    only costs the thumbnail a storage check."""
    try:
        return method(*args)
    except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
        CACHE_WARNING(exc)
        return None


def cache_key(storage: Storage, name: str, size: int) -> str:
    """Where the cache remembers the thumbnail of ``name`` in ``storage`` at ``size``."""
    # Hashed: names may be longer or hold characters that memcached does not take in a key.
    where = f"{type(storage).__module__}.{type(storage).__qualname__}|{name}|{size}"
    if identity := storage_identity(storage):
        where += f"|{identity}"
    return tenant_key(CACHE_PREFIX + hashlib.sha256(where.encode()).hexdigest())


# Arguments of a storage that say who may use it, not where its files are: left out of its identity,
# so that rotating a key does not make every thumbnail be looked up again.
_CREDENTIALS = re.compile(r"key|secret|token|password|credential|sas|session", re.IGNORECASE)


def storage_identity(storage: Storage) -> str:
    """Which storage of its class ``storage`` is: the arguments it was made with (a bucket's name, a
    location, STORAGES' OPTIONS), credentials left out; "" for one made from settings alone.

    Two buckets of one class (a gallery field's ``S3Storage(bucket_name="gallery")`` beside the
    default one) shared the cache key of a file name, and one showed the other's thumbnail name: a
    missing picture. A storage made with no arguments (``MEDIA_ROOT``'s, an ``S3Storage`` configured
    by ``AWS_*`` settings: one per project) keeps the key it had before, so an upgrade does not make
    every remembered thumbnail be looked up again.
    """
    deconstruct = getattr(storage, "deconstruct", None)
    if deconstruct is None:  # not @deconstructible: where it says its files are
        found = {attr: getattr(storage, attr, None) for attr in ("bucket_name", "azure_container", "location", "base_url")}
        return repr(sorted((attr, str(value)) for attr, value in found.items() if value))
    _path, args, kwargs = deconstruct()
    kept = sorted((key, repr(value)) for key, value in kwargs.items() if not _CREDENTIALS.search(key))
    return repr((tuple(map(repr, args)), kept)) if args or kept else ""


def target(name: str, size: int, stamp: str) -> str:
    """The storage name of the thumbnail of version ``stamp`` of the file ``name``."""
    version = hashlib.sha256(f"{name}|{size}|{stamp}".encode()).hexdigest()[:40]
    return f"{FOLDER}/{version}.jpg"


def make(storage: Storage, name: str, size: int, checksum: str | Callable[[], str] = "") -> tuple[str, tuple[int, ...]]:
    """The storage name of the thumbnail, made if missing, or ``FAILED`` if it cannot be; and how
    long to remember that (``()``: the cache's ``TIMEOUT``). ``checksum``: see :func:`url`."""
    try:
        stamp, data = file_version(storage, name, checksum)
        made = target(name, size, stamp)
        if storage.exists(made):
            return made, ()
        if data is None:
            data = read(storage, name)
            if not on_local_disk(storage):  # the bytes read name it: a row's checksum may be of a file since replaced
                made = target(name, size, sha256(data))
        # Two processes may both get here; the second's save picks another name, and both work.
        return storage.save(made, ContentFile(render(data, size))), ()
    except InvalidImage as exc:  # a broken image: the original still shows, for as long as the cache keeps it
        logger.warning("No thumbnail of %s (%s: %s); showing the original image", name, type(exc).__name__, exc)
        return FAILED, ()
    except Exception as exc:  # noqa: BLE001 - a storage's error (S3 timing out): tried again soon
        logger.warning("No thumbnail of %s for now (%s: %s); showing the original image, trying again in %s s",
                       name, type(exc).__name__, exc, RETRY_AFTER)
        return FAILED, (RETRY_AFTER,)


def file_version(storage: Storage, name: str, checksum: str | Callable[[], str] = "") -> tuple[str, bytes | None]:
    """What tells this file from the one the name held before, and its bytes if they had to be read
    for it (kept for the thumbnail: read once over the network, not twice).

    On this machine's disk its modification time (free). Elsewhere (a bucket) the SHA-256 of its
    bytes, as the indexing task names the thumbnail it makes from the bytes it read: ``checksum``
    where the caller knows it (an index row's), else the file is read. A bucket's modification time
    cost a request (S3: a ``HEAD``) per image, in every reindex and on every page the cache forgot.
    """
    if on_local_disk(storage):
        try:
            return storage.get_modified_time(name).isoformat(), None
        except NotImplementedError:  # storages without modification times: the bytes themselves
            pass
    else:
        known = checksum if isinstance(checksum, str) else _found(checksum)  # a query: only for a bucket's file
        if known:
            return known, None
    data = read(storage, name)
    return sha256(data), data


def read(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        return read_bytes(handle, int(settings.MAX_INDEX_BYTES))


def render(data: bytes, size: int) -> bytes:
    """JPEG bytes: decoded as the index decodes (bounded pixels and formats, EXIF-rotated, RGB)."""
    image = open_image(data, max_pixels=int(settings.MAX_PIXELS),
                       allowed_formats=list(settings.ALLOWED_FORMATS), draft_size=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True, progressive=True)
    return buffer.getvalue()


class Writer:
    """The thumbnails (``THUMBNAIL_SIZE``) of the images one indexing call embeds, made from the bytes
    it read for them: pages and searches then find them ready, with no download of the original.

    :meth:`reading` notes which file an image's reader reads; :meth:`embedding` names its thumbnail
    by the SHA-256 of the bytes read (no request: a file replaced meanwhile never lends its name to
    the old picture), renders it (in the extractor's decode thread) and hands the upload to a few
    threads of its own, so a bucket's PUTs do not hold up the model. A thumbnail the cache says was
    made for these very bytes (a forced reindex, an image embedded again for a new model version)
    is neither rendered nor looked for again: the cache is asked once, for all ``files``, when the
    writer is made. Use it as a context manager: leaving waits for the uploads and tells the cache,
    in one call from the caller's thread (no cache connection per thread). Nothing here raises: a
    thumbnail not made is logged and its image's cache entry dropped (it may name the old file's
    thumbnail); pages make it on demand.
    """

    def __init__(self, files: Iterable[tuple[Storage, str]] = (), size: int | None = None):
        self.size = int(settings.THUMBNAIL_SIZE) if size is None else size
        self._made = self._remembered(files)
        self._files: dict[Any, tuple[Storage, str]] = {}
        self._uploads: list[tuple[str, str, Future]] = []  # (cache key, original's name, upload)
        self._failed: list[str] = []  # cache keys
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="visual-search-thumbnails")

    def _remembered(self, files: Iterable[tuple[Storage, str]]) -> Mapping[str, str]:
        """What the cache remembers of the thumbnails of ``files`` kept in a bucket, in one round-trip."""
        try:
            return remembered([(storage, name) for storage, name in files if not on_local_disk(storage)], self.size)
        except Exception:  # noqa: BLE001 - a storage that cannot say which it is: every thumbnail is made
            logger.warning("Thumbnails of this indexing call not looked up: a storage has no cache key", exc_info=True)
            return {}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info) -> None:
        self._pool.shutdown(wait=True)
        made = {}
        for cached, name, upload in self._uploads:
            try:
                made[cached] = upload.result()
            except Exception as exc:  # noqa: BLE001 - a storage's error: the page makes it on demand
                self._failure(cached, name, exc)
        if made:
            _cache_call(cache.set_many, made)
        if self._failed:
            _cache_call(cache.delete_many, self._failed)

    def reading(self, key: Any, storage: Storage, name: str, read: Callable[[], bytes]) -> Callable[[], bytes]:
        """``read``, the reader of the file ``name`` of the image ``key``, noted for :meth:`embedding`
        unless the file is on this machine's disk, whose thumbnail a page makes in milliseconds when
        it first shows it (made here, every image's would cost the reindex a quarter of its speed at
        110 images/s, images no page may ever show included)."""
        if not on_local_disk(storage):
            self._files[key] = (storage, name)
        return read

    def embedding(self, key: Any, data: bytes, checksum: str | None = None) -> None:
        """The image ``key`` (read through :meth:`reading`) is embedded from ``data``, whose SHA-256 the
        extractor gives (``checksum``; else it is computed here): its thumbnail."""
        storage, name = self._files.pop(key, (None, ""))
        if storage is None:
            return
        try:
            cached = cache_key(storage, name, self.size)
        except Exception:  # noqa: BLE001 - a storage that cannot say which it is: the page makes it
            logger.warning("No thumbnail of %s made while indexing: its storage has no cache key", name, exc_info=True)
            return
        try:
            made = target(name, self.size, checksum or sha256(data))
            if self._made.get(cached) == made:  # made for these very bytes (a forced reindex): nothing to do
                return
            upload = self._pool.submit(in_current_schema(_save), storage, made, render(data, self.size))
        except Exception as exc:  # noqa: BLE001 - never the image's indexing (nor a pool shut down by its error)
            self._failure(cached, name, exc)
            return
        self._uploads.append((cached, name, upload))

    def _failure(self, cached: str, name: str, exc: BaseException) -> None:
        logger.warning("No thumbnail of %s made while indexing (%s: %s); pages make it when they first show it",
                       name, type(exc).__name__, exc)
        self._failed.append(cached)


def on_local_disk(storage: Storage) -> bool:
    """Whether ``storage`` keeps its files on this machine's disk (it has ``path()``; a bucket's has not)."""
    try:
        storage.path("")
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - a path it refuses: it has paths all the same
        return True
    return True


def _save(storage: Storage, made: str, picture: bytes) -> str:
    """``picture`` saved as ``made``, unless a page (or an earlier reindex) saved it: its name."""
    if storage.exists(made):
        return made
    return storage.save(made, ContentFile(picture))
