"""Why an image could not be indexed: the sentences stored on a failed row, and their translation.

A failed :class:`~visual_search.models.ImageEmbedding` keeps its reason in English (``error``), written
by a Celery worker that knows no reader's language, and searched by its words (``visual_search_status``
finds missing files by :data:`~visual_search.indexing.MISSING_FROM_STORAGE`). The sentences are defined
here, marked for translation but not translated, and :func:`describe_failure` shows a stored one in the
active language: the admin's, or ``LANGUAGE_CODE`` in a management command. Rows stored before, in
English, read translated too; a text it does not know (another language, a shop's own) reads as stored.

The same sentences are the API's ``detail`` of an invalid photo, in the request's language (English
unless a client asks for another); the search page shows its customer a sentence of its own chosen by
``code``, but for a damaged file (:data:`DAMAGED_FILE`), whose reason both say.
"""

from __future__ import annotations

import functools
import re

from django.utils.translation import gettext, gettext_noop

# Reading the file
EMPTY = gettext_noop("The file is empty; send a JPEG, PNG or WebP photo.")
LARGER_THAN = gettext_noop("The image is larger than %(megabytes)s MB; send a smaller one.")
# Its format
NOT_AN_IMAGE = gettext_noop("The file is not an image we can read; send a JPEG, PNG or WebP photo.")
HEIC_REFUSED = gettext_noop("HEIC photos (an iPhone camera's format) are not accepted here; send a JPEG, PNG or WebP photo.")
AVIF_REFUSED = gettext_noop("AVIF images are not accepted here; send a JPEG, PNG or WebP photo.")
EPS_REFUSED = gettext_noop("EPS/PostScript files are not accepted; send a JPEG, PNG or WebP photo.")
SVG_REFUSED = gettext_noop("SVG drawings are not accepted; send a JPEG, PNG or WebP photo.")
PDF_REFUSED = gettext_noop("PDF files are not accepted; send a JPEG, PNG or WebP photo.")
FORMAT_REFUSED = gettext_noop("%(kind)s images are not accepted; use one of: %(formats)s.")
# Its size in pixels
NO_PIXELS = gettext_noop("The image has no pixels.")
TOO_MANY_PIXELS = gettext_noop("The image has too many pixels (more than %(most)s).")
TOO_LARGE = gettext_noop("The image is %(width)sx%(height)s pixels; at most %(most)s pixels are accepted. Send a smaller one.")
RLE_TOO_LARGE = gettext_noop(
    "The image is a compressed (RLE) BMP of %(width)sx%(height)s pixels; such BMPs are accepted up to %(most)s "
    "pixels. Save it as PNG or JPEG."
)
# A damaged file
DAMAGED = gettext_noop("The image file is damaged or truncated.")
HEADER_UNREADABLE = gettext_noop("The image file is damaged or truncated: its header cannot be read.")
PICTURE_MISSING = gettext_noop(
    "The image file is damaged or truncated: most of the picture is missing. Save or export it again."
)
TOO_MANY_PIECES = gettext_noop(
    "The image file is damaged or built to be slow: it is made of more than %(most)s pieces, where a photo has a "
    "few dozen. Save it again as an ordinary JPEG or PNG."
)
TOO_MANY_SCANS = gettext_noop(
    "The image file is damaged or built to be slow: a JPEG photo has a few scans, this one %(scans)s. Save it again "
    "as an ordinary JPEG."
)
RLE_OVERLONG = gettext_noop(
    "The image file is damaged or built to be slow: a compressed BMP of %(width)sx%(height)s pixels holds at most "
    "%(most)s bytes, this one %(size)s. Save it again as PNG or JPEG."
)
# Indexing it
MISSING = gettext_noop(
    "The image file %(name)s is missing from storage. Upload the image again, or reindex it once the file is back "
    "(`manage.py visual_search_reindex --only failed`). If the shop's pages show the image, the Celery workers do "
    "not read the same media storage as the web servers (STORAGES, MEDIA_ROOT)."
)
GAVE_UP = gettext_noop(
    "Took longer than the time limit %(count)d times (or its worker process was killed while computing it); it is "
    "not tried again by itself. Raise the Celery time limits of the visual search tasks (task_soft_time_limit, "
    "task_time_limit) or give the workers more CPU or memory, check the image file (a very large picture?), then "
    "reindex it (the admin's action, or `manage.py visual_search_reindex --only failed`)."
)

# A file that is an image, damaged: the customer is told what is wrong in these words (translated), on the
# search page and by the API alike; the page's own sentence for other invalid images ("not an image we can
# read") sent them looking for another format.
DAMAGED_FILE = (DAMAGED, HEADER_UNREADABLE, PICTURE_MISSING, TOO_MANY_PIECES, TOO_MANY_SCANS, RLE_OVERLONG)

REASONS = (
    EMPTY, LARGER_THAN, NOT_AN_IMAGE, HEIC_REFUSED, AVIF_REFUSED, EPS_REFUSED, SVG_REFUSED, PDF_REFUSED, FORMAT_REFUSED,
    NO_PIXELS, TOO_MANY_PIXELS, TOO_LARGE, RLE_TOO_LARGE, DAMAGED, HEADER_UNREADABLE, PICTURE_MISSING,
    TOO_MANY_PIECES, TOO_MANY_SCANS, RLE_OVERLONG, MISSING, GAVE_UP,
)

_PLACEHOLDER = re.compile(r"%\((\w+)\)([sd])")
# What the decoder said, after the sentence: "... cannot be read. (OSError)" (InvalidImage.for_staff).
_TECHNICAL = r"(?P<vs_technical> \(.*\))?"


def _pattern(msgid: str) -> re.Pattern:
    """``msgid`` as a pattern of the text it formats: each placeholder a named group."""
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(msgid):
        parts.append(re.escape(msgid[last:match.start()]))
        parts.append(rf"(?P<{match[1]}>-?\d+)" if match[2] == "d" else rf"(?P<{match[1]}>.+?)")
        last = match.end()
    parts.append(re.escape(msgid[last:]))
    return re.compile("".join(parts) + _TECHNICAL + r"\Z", re.DOTALL)


@functools.cache
def _patterns() -> list[tuple[str, re.Pattern]]:
    return [(msgid, _pattern(msgid)) for msgid in REASONS]


def describe_failure(stored: str) -> str:
    """A failed row's stored reason (``ImageEmbedding.error``) in the active language: one of
    :data:`REASONS`, its values and the decoder's words kept; any other text as it is."""
    for msgid, pattern in _patterns():
        match = pattern.match(stored)
        if match is None:
            continue
        values = {name: int(value) if f"%({name})d" in msgid else value
                  for name, value in match.groupdict().items() if name != "vs_technical"}
        try:
            text = gettext(msgid) % values if values else gettext(msgid)
        except (KeyError, TypeError, ValueError):  # a translation with other placeholders: English is better than none
            return stored
        return text + (match["vs_technical"] or "")
    return stored


def is_damaged(stored: str) -> bool:
    """Whether ``stored`` (English, as :class:`~visual_search.exceptions.InvalidImage` says it) is one of
    :data:`DAMAGED_FILE`."""
    return any(pattern.match(stored) for msgid, pattern in _patterns() if msgid in DAMAGED_FILE)
