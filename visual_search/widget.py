"""What the search-by-photo widget needs to render: where to post, limits, filters, results."""

from __future__ import annotations

import logging
from typing import Any

from django.urls import NoReverseMatch, reverse

from .photo_search import max_upload_bytes
from .registry import filter_lookups

logger = logging.getLogger("visual_search")

# Where the server-rendered results and errors travel from SearchByPhotoView to the widget.
RESULTS_KEY = "visual_search_results"
ERROR_KEY = "visual_search_error"
CONFIDENT_KEY = "visual_search_confident"


def _reverse(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def widget_context(
    context: Any = None,
    *,
    action: str | None = None,
    api_url: str | None = None,
    limit: int | None = None,
    camera: bool = True,
    label: str | None = None,
    widget_id: str = "vs",
    **filters: Any,
) -> dict[str, Any]:
    """Context of ``visual_search/widget.html``.

    ``action`` is where the form posts with JavaScript off (default: the ``visual_search_pages``
    page); ``api_url`` where the script sends the photo (default: the ``visual_search`` API).
    Keyword arguments named like an ``API_FILTERS`` parameter (``category="milk"``) narrow every
    search from this widget; others are ignored.
    """
    context = context or {}
    request = context.get("request")
    action = action or _reverse("visual_search_pages:search") or (request.path if request else "")
    api_url = api_url if api_url is not None else _reverse("visual_search:search")
    if api_url is None:
        logger.warning("The visual search widget found no API URL; include visual_search.api.urls to search without reloading.")
    allowed = filter_lookups()
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "action": action,
        "api_url": api_url or "",
        "limit": limit,
        "camera": camera,
        "label": label,
        "widget_id": widget_id,
        "filters": {name: value for name, value in filters.items() if name in allowed and value not in (None, "")},
        "max_bytes": max_upload_bytes(),
        "max_megabytes": f"{max_upload_bytes() / (1024 * 1024):g}",
        "results": context.get(RESULTS_KEY),
        "confident": context.get(CONFIDENT_KEY, True),
        "error": context.get(ERROR_KEY),
        "searched": context.get(RESULTS_KEY) is not None,
    }
