"""Search results as shop pages show them: name, link, picture and score, for API and templates.

One place turns :class:`~visual_search.search.SearchResult` objects into plain dicts, so the JSON
API, the server-rendered search page and the ``{% similar_products %}`` tag agree on every field.
How a shop's objects look in those dicts (name, link, thumbnail, price...) is the shop's
:class:`ResultAdapter`, named in ``VISUAL_SEARCH["RESULT_ADAPTER"]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.module_loading import import_string

from . import search, thumbnails
from .conf import settings
from .models import ImageEmbedding, content_types_of, type_is
from .registry import NotShown, filter_lookups, registrations_for_result, visible

logger = logging.getLogger("visual_search")

# The public fields of every result (the JSON API's, in this order), and those only templates and
# Python callers see. An adapter's extra fields may add to them, never replace them.
BASE_KEYS = ("id", "name", "url", "image_url", "score")
INTERNAL_KEYS = ("object", "similarity", "probability")
RESERVED_KEYS = frozenset(BASE_KEYS + INTERNAL_KEYS)

# Where thumbnails are kept, and how soon one not made for a storage error is tried again (see
# visual_search.thumbnails, which makes them; kept here for the code that imported them from here).
THUMBNAIL_FOLDER = thumbnails.FOLDER
THUMBNAIL_RETRY_AFTER = thumbnails.RETRY_AFTER
_WARNED: set[type] = set()  # adapters whose extra() clashed with a base field

# The ISO 4217 currencies whose minor unit is not two decimals (ISO 4217's list, amendment 178),
# by code: a price given as a number is written with this many decimals where the result's
# ``currency`` names one of them ("1,200 JPY", "1.500 KWD"), with two for any other currency or
# none. One table for the server (``widget.price_text``) and the script (``widget.number_shape``
# hands it over), so both write a price alike.
CURRENCY_DECIMALS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def currency_decimals(currency: Any) -> int:
    """How many decimals a price in ``currency`` (an ISO 4217 code, "JPY") is written with: its
    minor unit's (0 for JPY, 3 for KWD), 2 for other codes, unknown ones and no currency."""
    code = currency.strip().upper() if isinstance(currency, str) else ""
    return CURRENCY_DECIMALS.get(code, 2)


class ResultAdapter:
    """How a shop's objects appear in results. Subclass and name it in VISUAL_SEARCH['RESULT_ADAPTER'].

    One instance serves one list of results: :meth:`prepare` sees the whole list first (fetch
    prices or stock in one query there, not one per result), then the other methods are called
    per object. ``describe()`` makes :meth:`url` and :meth:`thumbnail_url` absolute when it has
    the request, and merges :meth:`extra` into each result.
    """

    # What the cache remembers of the thumbnails of the list being described (by cache key), looked
    # up in one round-trip by describe() before the per-object calls; {} outside describe().
    remembered_thumbnails: Mapping[str, str] = {}
    # The SHA-256 the index rows hold of the list's pictures whose thumbnails the cache forgot, by
    # file name (describe() asks the database once): such a thumbnail is found by that name, with no
    # request for the original. {} outside describe().
    indexed_checksums: Mapping[str, str] = {}

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
        checksum = self.indexed_checksums.get(image.name, "") if image else ""
        return thumbnail(image, self.thumbnail_size, self.remembered_thumbnails, checksum)

    def extra(self, obj: models.Model, request=None) -> dict[str, Any]:
        """JSON-safe fields added to the result, e.g. ``{"price": "12.90", "currency": "SEK",
        "available": True}``. They cannot replace the base fields (id, name, url, image_url, score).
        ``price_display``, where given, is the price as the cards write it, currency included (Oscar's
        "€12.90", as its pages write it); without it they write ``price`` and ``currency``."""
        return {}


def result_adapter() -> ResultAdapter:
    """A new instance of the ``RESULT_ADAPTER`` class."""
    return import_string(settings.RESULT_ADAPTER)()


def thumbnail(image: FieldFile | None, size: int, known: Mapping[str, str] | None = None, checksum: str = "") -> str | None:
    """The URL of a JPEG of ``image`` at most ``size`` px on its longest side, made once; never raises.

    The thumbnail is saved beside the original, in the same storage, under ``THUMBNAIL_FOLDER``,
    named by a hash of the original's name, ``size`` and version (on this machine's disk its
    modification time; in a bucket the SHA-256 of its bytes, ``checksum`` where the caller knows it,
    as its index row does), so a changed image gets a new one. The indexing task makes the one of
    ``THUMBNAIL_SIZE`` as it embeds the image; one not made yet is made here. Which thumbnail an image
    has is remembered in Django's cache (for CACHES' TIMEOUT), so a page of results costs no storage
    call. An image that cannot be read (broken, too many pixels, a refused format) shows its original.
    ``known``: what the cache remembered of a whole list's thumbnails (:func:`describe` looks them up
    in one round-trip).
    """
    if not image:
        return None
    return stored_thumbnail(image.storage, image.name, size, known, checksum or (lambda: _indexed_checksum(image)))


def _indexed_checksum(image: FieldFile) -> str:
    """The SHA-256 that the index row of ``image`` holds ("" without one): asked only where the cache
    forgot its thumbnail, one query by the row's key, cheaper than a request to the bucket."""
    instance, field = getattr(image, "instance", None), getattr(image, "field", None)
    if instance is None or instance.pk is None or field is None:
        return ""
    rows = (ImageEmbedding.objects.for_object(instance)
            .filter(field_name=field.name, source_name=image.name, status=ImageEmbedding.Status.READY)
            .exclude(checksum="").order_by("-updated_at").values_list("checksum", flat=True))
    return rows.first() or ""


def stored_thumbnail(storage: Storage, name: str, size: int, known: Mapping[str, str] | None = None,
                     checksum: str | Callable[[], str] = "") -> str:
    """:func:`thumbnail` of the file ``name`` in ``storage`` (the admin's previews of index rows,
    which have a file name and its field's storage, not a ``FieldFile``); the original's URL when
    no thumbnail can be made. ``known``: a page's :func:`visual_search.thumbnails.remembered`;
    ``checksum``: the SHA-256 of the file's bytes where known (an index row's), or what finds it."""
    return thumbnails.url(storage, name, size, known, checksum)


def images(objects: Iterable[models.Model]) -> dict[Any, FieldFile | None]:
    """``{pk: file}`` of each object's picture: its own registered image, else its first gallery image
    (in the gallery model's ``Meta.ordering``, then the oldest first) among those the registration
    shows (:meth:`~visual_search.registry.Registration.pictures`).

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
            registration.pictures().filter(**{f"{registration.result_pk_lookup()}__in": missing})
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
    if type(adapter).thumbnail_url is ResultAdapter.thumbnail_url:  # not a shop's own thumbnailer
        files = [(file.storage, file.name) for file in pictures.values() if file]
        adapter.remembered_thumbnails = thumbnails.remembered(files, adapter.thumbnail_size)
        adapter.indexed_checksums = indexed_checksums(objects, pictures, adapter.remembered_thumbnails, adapter.thumbnail_size)
    return [_describe_one(adapter, result, pictures.get(result.object.pk), request) for result in results]


def indexed_checksums(objects: Sequence[models.Model], pictures: Mapping[Any, FieldFile | None],
                      remembered: Mapping[str, str], size: int) -> dict[str, str]:
    """``{file name: SHA-256}`` that the index rows of ``objects`` hold, for the ``pictures`` in a
    bucket whose thumbnails the cache forgot (``remembered``: what it still knows): one query, none
    when it forgot none. A page then finds such a thumbnail with one ``exists`` call, no request for
    the original (its modification time was a ``HEAD`` each)."""
    try:
        forgotten = [pk for pk, file in pictures.items() if file and not thumbnails.on_local_disk(file.storage)
                     and thumbnails.cache_key(file.storage, file.name, size) not in remembered]
    except Exception:  # noqa: BLE001 - a storage that cannot say which it is: each thumbnail reads its original
        logger.debug("No checksums looked up for these results' thumbnails", exc_info=True)
        return {}
    if not forgotten:
        return {}
    rows = (
        ImageEmbedding.objects.filter(type_is("result_type", content_types_of(objects[0])),
                                      result_id__in=[str(pk) for pk in forgotten], status=ImageEmbedding.Status.READY)
        .exclude(checksum="")
        .order_by("updated_at")  # the newest row of a name last: it wins
        .values_list("source_name", "checksum")
    )
    return dict(rows)


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
        search.check_shown(obj, shown)  # a hidden product, a variant of a hidden parent: as the API's 404
        queryset = shown if queryset is None else shown.filter(pk__in=queryset.values("pk"))
        return describe(search.find_similar(obj, limit=int(limit), queryset=queryset), request)
    except search.NotIndexed as exc:
        logger.info("Similar products for %s %s: %s", type(obj).__name__, obj.pk, exc)
    except NotShown as exc:  # a hidden product or Oscar variant: no look-alikes, as the API's 404
        logger.info("Similar products for %s %s: not shown to customers, %s", type(obj).__name__, obj.pk, exc.reason)
    except ImproperlyConfigured as exc:  # its message says what to do; a traceback on every page buried it
        logger.error("Similar products are unavailable: %s", exc)
    except Exception:
        logger.exception("Similar products for %s %s failed; showing none", type(obj).__name__, obj.pk)
    return []
