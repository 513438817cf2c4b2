"""The admin's pictures of indexed images: the small JPEGs that customers' result cards show.

A page of the image index lists 100 rows, each with its picture and often its duplicate's: with the
originals as ``<img src>``, staff's browsers downloaded 100 full-size product photos (megabytes each
from a bucket) to show them 64 px wide. The same thumbnail as the result cards' (``THUMBNAIL_SIZE``)
is shown instead: one file per image for customers and staff, made by the indexing task, remembered
in the cache; a page of rows looks them all up in one round-trip (:func:`remember`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import thumbnails
from .conf import settings
from .models import ImageEmbedding
from .results import stored_thumbnail

logger = logging.getLogger("visual_search")


def thumbnail(row: ImageEmbedding, size: int = 64) -> str:
    """``row.thumbnail(size)`` showing the small copy of its file, linked to the file itself; the
    file where no copy can be made (a storage error: as result cards do), or for a failed image,
    which is most often a file that cannot be decoded, the file's name."""
    src = small_url(row)
    if row.status == ImageEmbedding.Status.FAILED and (src is None or src == row.image_url()):
        # No small copy could be made of a failed image: most often a file no one can decode
        # (damaged, not an image), which a browser cannot show either.
        return row.thumbnail(size, src=False)
    return row.thumbnail(size, src=src)


def remember(rows: Iterable[ImageEmbedding | None]) -> None:
    """Look up the thumbnails of a page's ``rows`` in one cache round-trip (a page of 100 rows and
    their duplicates made 100 to 200 calls to Redis): :func:`small_url` of each row then uses it."""
    rows = [row for row in rows if row is not None]
    files = [(row, storage) for row in rows if (storage := row.image_storage()) is not None]
    known = thumbnails.remembered([(storage, row.source_name) for row, storage in files], int(settings.THUMBNAIL_SIZE))
    for row in rows:
        row._remembered_thumbnails = known


def small_url(row: ImageEmbedding) -> str | None:
    """The URL of the thumbnail of the file ``row`` was computed from; None without a file or URL."""
    storage = row.image_storage()
    if storage is None:
        return None
    try:
        known = getattr(row, "_remembered_thumbnails", None)
        # The row's checksum names a bucket's thumbnail: one the cache forgot is found with no request for the original.
        return stored_thumbnail(storage, row.source_name, int(settings.THUMBNAIL_SIZE), known, row.checksum)
    except Exception:  # noqa: BLE001 - a storage that serves no URLs: the row's own fallback
        logger.debug("No thumbnail URL for the image of %s", row, exc_info=True)
        return None

