"""Settings of the web layer (API, widget, pages), read from ``settings.VISUAL_SEARCH`` on access.

These keys belong in :data:`visual_search.conf.DEFAULTS`; until they are there, this module reads
them from ``settings.VISUAL_SEARCH`` itself, with the same defaults, so nothing changes once they
move. Like the core settings, nothing is read at import time: ``override_settings`` just works.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

WEB_DEFAULTS: dict[str, Any] = {
    # The model that search by photo returns, as "app_label.ModelName"; None = the result model of
    # the first registration in VISUAL_SEARCH["MODELS"].
    "API_MODEL": None,
    # Filters customers may add to a search: request parameter -> queryset lookup, e.g.
    # {"category": "category__slug"}. Any other parameter is ignored, so no lookup can be forged.
    "API_FILTERS": {},
    "API_DEFAULT_LIMIT": 12,
    "API_MAX_LIMIT": 50,
    # Dotted path of a SearchResultSerializer subclass that adds fields (price, brand...).
    "API_RESULT_SERIALIZER": "visual_search.api.serializers.SearchResultSerializer",
    # Anonymous search-by-photo requests per client (DRF rate syntax); None switches it off.
    # Each search runs VGG16 once (about 0.1 to 0.5 s of CPU), so an open endpoint needs a limit.
    "SEARCH_THROTTLE_RATE": "30/min",
}


def web_setting(name: str) -> Any:
    """``VISUAL_SEARCH[name]``, else its default; the core settings object wins once it knows the key."""
    from ..conf import settings

    try:
        return getattr(settings, name)
    except AttributeError:
        user = getattr(django_settings, "VISUAL_SEARCH", {}) or {}
        return user.get(name, WEB_DEFAULTS[name])


def search_model() -> type[models.Model]:
    """The model search by photo returns: ``API_MODEL``, or the first registration's result model."""
    from ..registry import get_registrations

    label = web_setting("API_MODEL")
    if label:
        try:
            return apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise ImproperlyConfigured(f"VISUAL_SEARCH['API_MODEL'] = {label!r}: no such model; use 'app_label.ModelName'.") from exc
    registrations = get_registrations()
    if not registrations:
        raise ImproperlyConfigured("Search by photo needs a registered model: add one to VISUAL_SEARCH['MODELS'].")
    return registrations[0].result_model


def filter_lookups() -> dict[str, str]:
    """The allowed filters, ``{parameter: lookup}`` (``API_FILTERS``)."""
    filters = web_setting("API_FILTERS") or {}
    if not isinstance(filters, dict):
        raise ImproperlyConfigured("VISUAL_SEARCH['API_FILTERS'] must be a dict of {parameter: lookup}.")
    return dict(filters)
