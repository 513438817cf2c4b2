"""django-visual-search: search by photo and "find similar" for Django shops.

The public API is importable from here; each name is loaded on first use, so importing the
package never imports models, Celery or TensorFlow.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_API = {
    "register": "visual_search.registry",
    "unregister": "visual_search.registry",
    "pause_indexing": "visual_search.signals",
    "search_by_image": "visual_search.search",
    "find_similar": "visual_search.search",
    "warm_up": "visual_search.search",
    "being_indexed": "visual_search.search",
    "SearchResult": "visual_search.search",
    "NotIndexed": "visual_search.search",
    "NotSearchable": "visual_search.search",
    "InvalidImage": "visual_search.exceptions",
    "ImageTooLarge": "visual_search.exceptions",
    "UnsupportedFormat": "visual_search.exceptions",
    "WeightsUnavailable": "visual_search.exceptions",
    "VisualSearchError": "visual_search.exceptions",
    "VisibilityRuleError": "visual_search.registry",
    "NotShown": "visual_search.registry",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'visual_search' has no attribute {name!r}")
