"""One search by photo, as the JSON API and the server-rendered page both run it.

Everything a customer can get wrong becomes a :class:`PhotoSearchError` carrying the HTTP status, a
stable ``code`` and a message for the customer, so neither view can answer 500 for bad input. Sizes
are checked before anything is decoded: first the request's ``Content-Length``, then the upload's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldError, ImproperlyConfigured, ValidationError
from django.db import DatabaseError
from django.views.decorators.debug import sensitive_variables

from . import search
from .conf import settings
from .embeddings.images import Box
from .exceptions import ImageTooLarge, InvalidBox, InvalidImage, TooManySearches, UnsupportedFormat
from .models import unapplied_migrations
from .reasons import describe_failure, is_damaged
from .registry import VisibilityRuleError, search_model, visible
from .results import apply_filters, describe

logger = logging.getLogger("visual_search")

# Room for the multipart boundaries, headers and the other form fields around the photo.
MULTIPART_SLACK = 64 * 1024


class PhotoSearchError(Exception):
    """A search that cannot be answered: ``status`` (HTTP), ``code`` (stable) and ``detail`` (for
    people); ``retry_after`` (seconds) for a passing failure, sent as the ``Retry-After`` header;
    ``format`` (415 only) names the refused kind of file ("SVG", "HEIC") for the customer's words;
    ``reason`` (``"damaged"``: an ``invalid_image`` that is an image, damaged) says that ``detail`` is the
    customer's words already (the file's reason, translated), which the page and the widget show as it is."""

    def __init__(self, status: int, code: str, detail: str, retry_after: int | None = None, format: str = "",
                 reason: str = ""):
        super().__init__(detail)
        self.status, self.code, self.detail, self.retry_after, self.format = status, code, detail, retry_after, format
        self.reason = reason

    def as_dict(self) -> dict[str, str]:
        more = {"format": self.format} if self.format else {"reason": self.reason} if self.reason else {}
        return {"detail": self.detail, "code": self.code, **more}


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_BYTES)


def too_large() -> PhotoSearchError:
    megabytes = max_upload_bytes() / (1024 * 1024)
    return PhotoSearchError(413, "file_too_large", f"The photo is larger than {megabytes:g} MB; send a smaller one.")


def check_content_length(meta: Mapping[str, Any]) -> None:
    """Refuse a request body that cannot hold an acceptable photo, before it is read or parsed.

    A body must declare its length: Django reads no more than ``Content-Length`` says, and a
    chunked body (no length, which gunicorn accepts) would be read as empty, so it gets 411 saying
    so rather than "send a photo". A declared length over ``MAX_UPLOAD_BYTES`` gets 413 unread.
    """
    declared = meta.get("CONTENT_LENGTH")
    if not declared and "chunked" in str(meta.get("HTTP_TRANSFER_ENCODING", "")).lower():
        raise PhotoSearchError(
            411, "length_required", "Send the photo with a Content-Length header; chunked uploads are not accepted."
        )
    try:
        length = int(declared or 0)
    except ValueError:
        raise PhotoSearchError(400, "invalid_length", "The Content-Length header is not a number.") from None
    if length > max_upload_bytes() + MULTIPART_SLACK:
        raise too_large()


def parse_limit(value: Any) -> int:
    """The number of results asked for: ``API_DEFAULT_LIMIT`` when absent, 1 to ``API_MAX_LIMIT``."""
    highest = int(settings.API_MAX_LIMIT)
    if value in (None, ""):
        return min(int(settings.API_DEFAULT_LIMIT), highest)
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= highest:
        raise invalid_limit()
    return limit


def invalid_limit() -> PhotoSearchError:
    """400 ``invalid_limit``, worded the same by every endpoint and every way the limit is sent."""
    return PhotoSearchError(400, "invalid_limit", f"limit must be a whole number from 1 to {int(settings.API_MAX_LIMIT)}.")


# The no-JavaScript page sends the box as four form fields; the API as one.
BOX_FIELDS = ("box_x0", "box_y0", "box_x1", "box_y1")
WHOLE = (0.0, 0.0, 1.0, 1.0)


def parse_box(params: Mapping[str, Any]) -> Box | None:
    """The region of the photo to search: ``box=x0,y0,x1,y1`` or the four ``BOX_FIELDS`` (fractions
    of the photo, 0 to 1); None for the whole photo. 400 ``invalid_box`` when malformed."""
    value = params.get("box")
    if value in (None, "") and any(params.get(field) not in (None, "") for field in BOX_FIELDS):
        # A field left empty is that edge of the photo: a customer changes only the edge that matters.
        value = [params.get(field) if params.get(field) not in (None, "") else edge for field, edge in zip(BOX_FIELDS, WHOLE)]
    try:
        return Box.parse(value)
    except InvalidBox as exc:
        raise PhotoSearchError(400, exc.code, str(exc)) from None


# A database or index that is down usually comes back within seconds (a restart, a failover).
RETRY_AFTER_SECONDS = 10


def unavailable(
    retry_after: int | None = RETRY_AFTER_SECONDS,
    message: str = "Search by photo is not available right now; please try again later.",
) -> PhotoSearchError:
    """503 for a failure that is not the customer's: the database, the index, the model (which may
    pass: ``Retry-After``), the shop's own setup (``retry_after=None``), or an index being rebuilt."""
    return PhotoSearchError(503, "unavailable", message, retry_after)


def busy(retry_after: int) -> PhotoSearchError:
    """503 ``busy``: the process runs ``MAX_CONCURRENT_SEARCHES`` searches already (a burst)."""
    return PhotoSearchError(503, "busy", "Search by photo is busy right now; please try again in a few seconds.", retry_after)


def shown_to(model, request=None):
    """:func:`~visual_search.registry.visible`, a failing ``VISIBILITY`` rule answered as 503: the
    customer sees nothing hidden and no 500 page, the log says what is wrong with the rule."""
    try:
        return visible(model, request)
    except VisibilityRuleError:
        logger.exception("Visual search: the shop's VISIBILITY rule failed; answering 503 until it is fixed")
        raise unavailable(retry_after=None) from None


def search_queryset(params: Mapping[str, Any], request=None):
    """The objects this customer may see (``VISIBILITY``), narrowed by the allowed filters in ``params``."""
    queryset = apply_filters(shown_to(search_model(), request), params)
    try:
        queryset.exists()  # a bad filter value (a word for a number) fails here, not mid-search
    except (ValueError, TypeError, ValidationError, FieldError) as exc:
        raise PhotoSearchError(400, "invalid_filter", f"A filter value is not valid: {exc}") from None
    except DatabaseError:
        logger.exception("Search by photo: the database is unavailable")
        raise unavailable() from None
    return queryset


def confident(items: list[dict[str, Any]]) -> bool:
    """Whether the first of :func:`search_photo`'s results is likely the product (``CONFIDENT_SCORE``)."""
    return bool(items) and (items[0].get("probability") or 0.0) >= float(settings.CONFIDENT_SCORE)


@sensitive_variables("upload")
def search_photo(upload, params: Mapping[str, Any], request=None, limit: int | None = None) -> list[dict[str, Any]]:
    """Objects that look like the uploaded photo, :func:`~visual_search.results.describe`'d, best first."""
    if upload is None:
        raise PhotoSearchError(400, "required", "Send a photo in the form field 'image'.")
    if getattr(upload, "size", 0) > max_upload_bytes():
        raise too_large()
    limit = parse_limit(params.get("limit")) if limit is None else limit
    box = parse_box(params)
    queryset = search_queryset(params, request)
    started = time.perf_counter()
    try:
        results = search.search_by_image(upload, queryset, limit=limit, box=box)
    except TooManySearches as exc:
        # Not the customer's doing and it passes: the API's client and the widget wait Retry-After.
        # Logged by capacity, once a minute: a burst refuses many at once.
        raise busy(exc.retry_after) from None
    except ImageTooLarge as exc:
        raise PhotoSearchError(400, "too_many_pixels", str(exc)) from None
    except UnsupportedFormat as exc:
        raise PhotoSearchError(415, exc.code, str(exc), format=exc.kind) from None
    except InvalidImage as exc:
        # A truncated JPEG: the API said "damaged or truncated", the page and the widget "not an image we
        # can read". All three now say the reason, in the active language ("reason" tells the widget).
        damaged = is_damaged(str(exc))
        raise PhotoSearchError(400, exc.code, describe_failure(str(exc)), reason="damaged" if damaged else "") from None
    except Exception as exc:
        # Weights that cannot load, TensorFlow out of memory, the index unreachable: not the
        # customer's fault and maybe passing, so 503 and the traceback in the log. Between an
        # upgrade's deploy and its `migrate`, what to run instead of "no such column".
        waiting = unapplied_migrations() if isinstance(exc, DatabaseError) else []
        if waiting:
            logger.error(
                "Search by photo is unavailable: the database lacks visual search's migrations %s; run `python manage.py "
                "migrate` (docs/upgrading.md).", ", ".join(waiting),
            )
        elif isinstance(exc, ImproperlyConfigured):
            # Its message says what to do (the pgvector extension to create, say): a traceback of
            # fifty lines on every search buried it.
            logger.error("Search by photo is unavailable: %s", exc)
        else:
            logger.exception("Search by photo failed")
        raise unavailable() from None
    if not results and search.being_indexed(queryset.model):
        # Nothing to search yet (an upgrade recomputing every vector): not "nothing looks like that
        # photo", which told customers to try another angle.
        raise unavailable(60, "Search by photo is being updated; please try again in a few minutes.")
    logger.debug("Search by photo: %d results in %.3f s", len(results), time.perf_counter() - started)
    try:
        return describe(results, request)
    except DatabaseError:
        logger.exception("Search by photo: the database is unavailable")
        raise unavailable() from None
