"""The dashboard menu entry: ``OSCAR_DASHBOARD_NAVIGATION = with_dashboard_entry(OSCAR_DASHBOARD_NAVIGATION)``.

Imported from settings, so it imports nothing of Django's but the lazy translation.
"""

from __future__ import annotations

import copy
from typing import Any

from django.utils.translation import gettext_lazy as _

DASHBOARD_ENTRY = {"label": _("Visual search"), "url_name": "visual_search_oscar:visual-search-status"}


def with_dashboard_entry(navigation: list[dict[str, Any]], under: str = "catalogue") -> list[dict[str, Any]]:
    """A copy of ``navigation`` with "Visual search" last under the menu whose first child links to
    the ``under`` dashboard (Oscar's Catalogue menu by default), or at the end when there is none."""
    navigation = copy.deepcopy(navigation)
    for menu in navigation:
        children = menu.get("children") or []
        if any(str(child.get("url_name", "")).startswith(f"dashboard:{under}") for child in children):
            children.append(dict(DASHBOARD_ENTRY))
            return navigation
    navigation.append({**DASHBOARD_ENTRY, "icon": "fas fa-camera"})
    return navigation
