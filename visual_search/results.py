"""Search results as shop pages show them: name, link, picture and score, for API and templates.

One place turns :class:`~visual_search.search.SearchResult` objects into plain dicts, so the JSON
API, the server-rendered search page and the ``{% similar_products %}`` tag agree on every field.
How a shop's objects look in those dicts (name, link, thumbnail, price...) is the shop's
:class:`ResultAdapter`, named in ``VISUAL_SEARCH["RESULT_ADAPTER"]``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.module_loading import import_string
from PIL import Image

from . import search
from .conf import settings
from .embeddings.images import checksum, open_image, read_bytes
from .exceptions import InvalidImage
from .registry import filter_lookups, registrations_for_result, visible

logger = logging.getLogger("visual_search")

# The public fields of every result (the JSON API's, in this order), and those only templates and
# Python callers see. An adapter's extra fields may add to them, never replace them.
BASE_KEYS = ("id", "name", "url", "image_url", "score")
INTERNAL_KEYS = ("object", "similarity", "probability")
RESERVED_KEYS = frozenset(BASE_KEYS + INTERNAL_KEYS)

THUMBNAIL_FOLDER = "visual_search/thumbnails"
_THUMBNAIL_CACHE_PREFIX = "visual_search:thumbnail:"
_THUMBNAIL_FAILED = ""  # cached for an image with no thumbnail: its original is shown
# A thumbnail not made for a storage error (a bucket timing out, a connection reset) is tried again
# after this many seconds, not after the cache's TIMEOUT (often hours, or never with None): every
# card showed the full-size original until then. Not at once either: a storage that is down would
# cost each page of results one failing call per card.
THUMBNAIL_RETRY_AFTER = 60
_WARNED: set[type] = set()  # adapters whose extra() clashed with a base field


class ResultAdapter:
    """How a shop's objects appear in results. Subclass and name it in VISUAL_SEARCH['RESULT_ADAPTER'].

    One instance serves one list of results: :meth:`prepare` sees the whole list first (fetch
    prices or stock in one query there, not one per result), then the other methods are called
    per object. ``describe()`` makes :meth:`url` and :meth:`thumbnail_url` absolute when it has
    the request, and merges :meth:`extra` into each result.
    """

    @property
    def thumbnail_size(self) -> int:
        """The longest side in px of the default thumbnail (``THUMBNAIL_SIZE``); a subclass may set
        ``thumbnail_size = 200`` instead."""
        return int(settings.THUMBNAIL_SIZE)

    def prepare(self, objects: Sequence[models.Model], request=None) -> None:
        """Called once per result list, before the per-object methods: e.g.
        ``prefetch_related_objects(objects, "stockrecords")``. The default does nothing."""

    def name(self, obj: models.Model) -> str:
        """The result's title: ``str(obj)``."""
        return str(obj)

    def url(self, obj: models.Model) -> str | None:
        """The object's page: ``obj.get_absolute_url()`` if it has one, else None."""
        return obj.get_absolute_url() if hasattr(obj, "get_absolute_url") else None

    def thumbnail_url(self, obj: models.Model, image: FieldFile | None) -> str | None:
        """The picture's URL; ``image`` is the one found for ``obj`` (its own, else its first gallery
        image), or None. The default is a small cached JPEG (:func:`thumbnail`); a shop with its own
        thumbnailer (sorl-thumbnail, easy-thumbnails) returns that one's URL here."""
        return thumbnail(image, self.thumbnail_size)

    def extra(self, obj: models.Model, request=None) -> dict[str, Any]:
        """JSON-safe fields added to the result, e.g. ``{"price": "12.90", "currency": "SEK",
        "available": True}``. They cannot replace the base fields (id, name, url, image_url, score)."""
        return {}


def result_adapter() -> ResultAdapter:
    """A new instance of the ``RESULT_ADAPTER`` class."""
    return import_string(settings.RESULT_ADAPTER)()


def thumbnail(image: FieldFile | None, size: int) -> str | None:
    """The URL of a JPEG of ``image`` at most ``size`` px on its longest side, made once; never raises.

    The thumbnail is saved beside the original, in the same storage, under ``THUMBNAIL_FOLDER``,
    named by a hash of the original's name, ``size`` and modification time (its checksum where the
    storage has no times), so a changed image gets a new one. Which thumbnail an image has is
    remembered in Django's cache (for CACHES' TIMEOUT), so a page of results costs no storage call.
    An image that cannot be read (broken, too many pixels, a refused format) shows its original.
    """
    if not image:
        return None
    return stored_thumbnail(image.storage, image.name, size)


def stored_thumbnail(storage: Storage, name: str, size: int) -> str:
    """:func:`thumbnail` of the file ``name`` in ``storage`` (the admin's previews of index rows,
    which have a file name and its field's storage, not a ``FieldFile``); the original's URL when
    no thumbnail can be made."""
    key = _thumbnail_cache_key(storage, name, size)
    made = _cache_call(cache.get, key)
    if made is None:
        made, remember_for = _make_thumbnail(storage, name, size)
        _cache_call(cache.set, key, made, *remember_for)
    return storage.url(made or name)


def _cache_call(method, *args):
    """A call to Django's cache that cannot fail a search: a cache that is down (Redis restarting)
    only costs the thumbnail a storage check."""
    try:
        return method(*args)
    except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
        logger.warning("Thumbnail cache unavailable: %s", exc)
        return None


def _thumbnail_cache_key(storage: Storage, name: str, size: int) -> str:
    # Hashed: names may be longer or hold characters that memcached does not take in a key.
    where = f"{type(storage).__module__}.{type(storage).__qualname__}|{name}|{size}"
    if identity := _storage_identity(storage):
        where += f"|{identity}"
    return _THUMBNAIL_CACHE_PREFIX + hashlib.sha256(where.encode()).hexdigest()


# Arguments of a storage that say who may use it, not where its files are: left out of its identity,
# so that rotating a key does not make every thumbnail be looked up again.
_CREDENTIALS = re.compile(r"key|secret|token|password|credential|sas|session", re.IGNORECASE)


def _storage_identity(storage: Storage) -> str:
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


def _make_thumbnail(storage: Storage, name: str, size: int) -> tuple[str, tuple[int, ...]]:
    """The storage name of the thumbnail, made if missing, or ``_THUMBNAIL_FAILED`` if it cannot
    be; and how long to remember that (``()``: the cache's ``TIMEOUT``)."""
    try:
        stamp, data = _file_version(storage, name)
        version = hashlib.sha256(f"{name}|{size}|{stamp}".encode()).hexdigest()[:40]
        target = f"{THUMBNAIL_FOLDER}/{version}.jpg"
        if storage.exists(target):
            return target, ()
        # Two processes may both get here; the second's save picks another name, and both work.
        data = _read(storage, name) if data is None else data
        return storage.save(target, ContentFile(_render_thumbnail(data, size))), ()
    except InvalidImage as exc:  # a broken image: the original still shows, for as long as the cache keeps it
        logger.warning("No thumbnail of %s (%s: %s); showing the original image", name, type(exc).__name__, exc)
        return _THUMBNAIL_FAILED, ()
    except Exception as exc:  # noqa: BLE001 - a storage's error (S3 timing out): tried again soon
        logger.warning("No thumbnail of %s for now (%s: %s); showing the original image, trying again in %s s",
                       name, type(exc).__name__, exc, THUMBNAIL_RETRY_AFTER)
        return _THUMBNAIL_FAILED, (THUMBNAIL_RETRY_AFTER,)


def _file_version(storage: Storage, name: str) -> tuple[str, bytes | None]:
    """What tells this file from the one the name held before, and its bytes if they had to be read
    for it (kept for the thumbnail: read once over the network, not twice)."""
    try:
        return storage.get_modified_time(name).isoformat(), None
    except NotImplementedError:  # storages without modification times: the bytes themselves
        data = _read(storage, name)
        return checksum(data), data


def _read(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        return read_bytes(handle, int(settings.MAX_INDEX_BYTES))


def _render_thumbnail(data: bytes, size: int) -> bytes:
    """JPEG bytes: decoded as the index decodes (bounded pixels and formats, EXIF-rotated, RGB)."""
    image = open_image(data, max_pixels=int(settings.MAX_PIXELS),
                       allowed_formats=list(settings.ALLOWED_FORMATS), draft_size=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True, progressive=True)
    return buffer.getvalue()


def images(objects: Iterable[models.Model]) -> dict[Any, FieldFile | None]:
    """``{pk: file}`` of each object's picture: its own registered image, else its first gallery image
    (in the gallery model's ``Meta.ordering``, then the oldest first).

    Two queries at most per registration, whatever the number of objects.
    """
    objects = list(objects)
    if not objects:
        return {}
    model = type(objects[0])
    found: dict[Any, FieldFile | None] = {obj.pk: None for obj in objects}
    for registration in registrations_for_result(model):
        missing = [pk for pk, file in found.items() if file is None]
        if not missing:
            break
        field = registration.model._meta.get_field(registration.image_field)
        if registration.model is model and not registration.result:
            for obj in objects:
                file = getattr(obj, registration.image_field)
                if found[obj.pk] is None and file:
                    found[obj.pk] = file
            continue
        rows = (
            registration.model._default_manager.filter(**{f"{registration.result_pk_lookup()}__in": missing})
            .exclude(**{registration.image_field: ""})
            # The gallery's own order first (Meta.ordering: a primary flag, a position), then the oldest.
            .order_by(*registration.model._meta.ordering, "pk")
            .values_list(registration.result_pk_lookup(), registration.image_field)
        )
        for pk, name in rows:
            if pk in found and found[pk] is None:
                found[pk] = field.attr_class(None, field, name)  # a file of no instance: url and open work
    return found


def image_urls(objects: Iterable[models.Model]) -> dict[Any, str | None]:
    """``{pk: url}`` of each object's original picture (see :func:`images`)."""
    return {pk: file.url if file else None for pk, file in images(objects).items()}


def describe(results: Iterable, request=None) -> list[dict[str, Any]]:
    """Plain dicts for ``SearchResult`` objects, as the ``RESULT_ADAPTER`` shows them: object, id,
    name, url, image_url (the thumbnail; both URLs absolute when ``request`` is given), score, the
    similarity and probability it was made of (not in the JSON), and the adapter's extra fields."""
    results = list(results)
    objects = [result.object for result in results]
    adapter = result_adapter()
    adapter.prepare(objects, request)
    pictures = images(objects)
    return [_describe_one(adapter, result, pictures.get(result.object.pk), request) for result in results]


def _describe_one(adapter: ResultAdapter, result, image: FieldFile | None, request) -> dict[str, Any]:
    obj = result.object
    item = {
        "object": obj, "id": obj.pk, "name": adapter.name(obj), "url": _absolute(_web_link(adapter.url(obj)), request),
        "image_url": _absolute(adapter.thumbnail_url(obj, image), request), "score": result.score,
        "similarity": result.similarity, "probability": result.probability,
    }
    extra = adapter.extra(obj, request) or {}
    if (clashes := RESERVED_KEYS.intersection(extra)) and type(adapter) not in _WARNED:
        _WARNED.add(type(adapter))  # once per process, not once per result of every search
        logger.warning("%s.extra() returned %s, which are base fields of a result; they are ignored",
                       type(adapter).__name__, sorted(clashes))
    return {**item, **{key: value for key, value in extra.items() if key not in RESERVED_KEYS}}


# What a browser ignores in a link: spaces and control characters before it, tabs and newlines in it.
_IGNORED_IN_LINKS = re.compile(r"[\x00-\x20]")


def _web_link(url: str | None) -> str | None:
    """``url`` when it leads to a web page (http, https or a path), else None: a ``javascript:`` URL
    (a feed-imported product link, say) in a card's href ran script in the shop's pages when clicked
    (the widget, the search page, similar products). Logged, so the shop finds the product."""
    if not url:
        return url
    try:
        scheme = urlsplit(_IGNORED_IN_LINKS.sub("", str(url))).scheme.lower()
    except ValueError:  # "http://[::1": no link a browser follows either
        scheme = "?"
    if scheme in ("", "http", "https"):
        return url
    logger.warning("A result's url %r is not a web page (scheme %r): shown without a link", str(url)[:80], scheme)
    return None


def _absolute(url: str | None, request) -> str | None:
    # build_absolute_uri leaves an already absolute URL (a CDN's, a bucket's) as it is.
    return request.build_absolute_uri(url) if request is not None and url else url


def extra_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a :func:`describe`'d result that its adapter added (what the API adds to its JSON)."""
    return {key: value for key, value in item.items() if key not in RESERVED_KEYS}


def apply_filters(queryset: models.QuerySet, params: Mapping[str, Any]) -> models.QuerySet:
    """Narrow ``queryset`` by the allowed filters present (and non-empty) in ``params``."""
    for parameter, lookup in filter_lookups().items():
        value = params.get(parameter)
        if value not in (None, ""):
            queryset = queryset.filter(**{lookup: value})
    return queryset


def similar_items(obj: models.Model, *, limit: int = 4, queryset: models.QuerySet | None = None, request=None) -> list[dict[str, Any]]:
    """:func:`describe`'d objects similar to ``obj``; never raises, so a page never breaks.

    No embedding yet, an empty index, or any model or storage error gives ``[]`` and a log line on
    the ``visual_search`` logger (INFO when the object is simply not indexed yet, ERROR otherwise).
    """
    if obj is None or getattr(obj, "pk", None) is None:
        return []
    try:
        shown = visible(type(obj), request)  # the shop's rule, and within it the template's queryset
        queryset = shown if queryset is None else shown.filter(pk__in=queryset.values("pk"))
        return describe(search.find_similar(obj, limit=int(limit), queryset=queryset), request)
    except search.NotIndexed as exc:
        logger.info("Similar products for %s %s: %s", type(obj).__name__, obj.pk, exc)
    except Exception:
        logger.exception("Similar products for %s %s failed; showing none", type(obj).__name__, obj.pk)
    return []
