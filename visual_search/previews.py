"""The admin's pictures of indexed images: the small JPEGs that customers' result cards show.

A page of the image index lists 100 rows, each with its picture and often its duplicate's: with the
originals as ``<img src>``, staff's browsers downloaded 100 full-size product photos (megabytes each
from a bucket) to show them 64 px wide. The same thumbnail as the result cards' (``THUMBNAIL_SIZE``)
is shown instead: one file per image for customers and staff, made once, remembered in the cache.
"""

from __future__ import annotations

import logging

from .conf import settings
from .models import ImageEmbedding
from .results import stored_thumbnail

logger = logging.getLogger("visual_search")


def thumbnail(row: ImageEmbedding, size: int = 64) -> str:
    """``row.thumbnail(size)`` showing the small copy of its file, linked to the file itself; the
    file where no copy can be made (a broken image, a storage error: as result cards do)."""
    return row.thumbnail(size, src=small_url(row))


def small_url(row: ImageEmbedding) -> str | None:
    """The URL of the thumbnail of the file ``row`` was computed from; None without a file or URL."""
    storage = row.image_storage()
    if storage is None:
        return None
    try:
        return stored_thumbnail(storage, row.source_name, int(settings.THUMBNAIL_SIZE))
    except Exception:  # noqa: BLE001 - a storage that serves no URLs: the row's own fallback
        logger.debug("No thumbnail URL for the image of %s", row, exc_info=True)
        return None
