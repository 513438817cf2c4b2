"""System checks of the Oscar integration (ids ``visual_search_oscar.W001``...)."""

from __future__ import annotations

from django.core import checks

from visual_search.conf import settings

BROWSABLE = "visual_search.contrib.oscar.visibility.browsable"


def check_visibility(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """W001: no VISIBILITY rule, so hidden (``is_public=False``) products and variants are shown."""
    if settings.VISIBILITY:
        return []
    return [
        checks.Warning(
            "VISUAL_SEARCH has no 'VISIBILITY': search by photo and similar products show Oscar products "
            "that are not public, and variants on their own.",
            hint=f"Add \"VISIBILITY\": \"{BROWSABLE}\" to VISUAL_SEARCH (docs/oscar.md).",
            id="visual_search_oscar.W001",
        )
    ]
