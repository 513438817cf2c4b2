"""Search results as shop pages show them: name, link, picture and score, for API and templates.

One place turns :class:`~visual_search.search.SearchResult` objects into plain dicts, so the JSON
API, the server-rendered search page and the ``{% similar_products %}`` tag agree on every field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models

from . import search
from .registry import filter_lookups, registrations_for_result, visible

logger = logging.getLogger("visual_search")


def image_urls(objects: Iterable[models.Model]) -> dict[Any, str | None]:
    """``{pk: url}`` of each object's picture: its own registered image, else its first gallery image.

    Two queries at most per registration, whatever the number of objects.
    """
    objects = list(objects)
    if not objects:
        return {}
    model = type(objects[0])
    urls: dict[Any, str | None] = {obj.pk: None for obj in objects}
    for registration in registrations_for_result(model):
        missing = [pk for pk, url in urls.items() if url is None]
        if not missing:
            break
        field = registration.model._meta.get_field(registration.image_field)
        if registration.model is model and not registration.result:
            for obj in objects:
                file = getattr(obj, registration.image_field)
                if urls[obj.pk] is None and file:
                    urls[obj.pk] = file.url
            continue
        rows = (
            registration.model._default_manager.filter(**{f"{registration.result_pk_lookup()}__in": missing})
            .exclude(**{registration.image_field: ""})
            .order_by("pk")
            .values_list(registration.result_pk_lookup(), registration.image_field)
        )
        for pk, name in rows:
            if urls.get(pk, "") is None:
                urls[pk] = field.storage.url(name)
    return urls


def describe(results: Iterable, request=None) -> list[dict[str, Any]]:
    """Plain dicts for ``SearchResult`` objects: object, id, name, url, image_url (absolute), score, and
    the similarity and probability it was made of (not in the JSON unless a serializer adds them)."""
    results = list(results)
    pictures = image_urls(result.object for result in results)
    items = []
    for result in results:
        obj = result.object
        url = obj.get_absolute_url() if hasattr(obj, "get_absolute_url") else None
        image_url = pictures.get(obj.pk)
        if request is not None and image_url:
            image_url = request.build_absolute_uri(image_url)
        items.append({
            "object": obj, "id": obj.pk, "name": str(obj), "url": url, "image_url": image_url, "score": result.score,
            "similarity": result.similarity, "probability": result.probability,
        })
    return items


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
