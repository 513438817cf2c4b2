"""django-visual-search: search by photo and "find similar" for Django shops.

The public API is importable from here; each name is loaded on first use, so importing the
package never imports models, Celery or TensorFlow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees (the package ships py.typed); at run time, _API below
    from .exceptions import ImageTooLarge as ImageTooLarge
    from .exceptions import InvalidImage as InvalidImage
    from .exceptions import TooManySearches as TooManySearches
    from .exceptions import UnsupportedFormat as UnsupportedFormat
    from .exceptions import VisualSearchError as VisualSearchError
    from .exceptions import WeightsUnavailable as WeightsUnavailable
    from .registry import NotShown as NotShown
    from .registry import VisibilityRuleError as VisibilityRuleError
    from .registry import register as register
    from .registry import unregister as unregister
    from .search import NotIndexed as NotIndexed
    from .search import NotSearchable as NotSearchable
    from .search import SearchResult as SearchResult
    from .search import being_indexed as being_indexed
    from .search import find_similar as find_similar
    from .search import search_by_image as search_by_image
    from .search import warm_up as warm_up
    from .signals import pause_indexing as pause_indexing

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
    "TooManySearches": "visual_search.exceptions",
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
