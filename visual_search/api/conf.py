"""Settings of the web layer (API, widget, pages), read from ``settings.VISUAL_SEARCH`` on access.

Their defaults live with the others in :data:`visual_search.conf.DEFAULTS`. Like the core
settings, nothing is read at import time: ``override_settings`` just works.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models

def web_setting(name: str) -> Any:
    """``VISUAL_SEARCH[name]`` or its default from :data:`visual_search.conf.DEFAULTS`."""
    from ..conf import settings

    return getattr(settings, name)


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
