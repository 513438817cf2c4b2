"""What the search-by-photo widget needs to render: where to post, limits, filters, results, words.

A page may hold several widgets (a compact one in the navbar, an inline one on the search page):
each gets element ids of its own, and results rendered on the server appear in one widget only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings as django_settings
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils import formats, translation
from django.utils.html import format_html
from django.utils.translation import gettext as _, gettext_lazy, ngettext, ngettext_lazy

from .conf import settings
from .embeddings.images import HEIF, heif_support
from .photo_search import BOX_FIELDS, PhotoSearchError, max_upload_bytes
from .registry import filter_lookups
from .results import CURRENCY_DECIMALS, currency_decimals

logger = logging.getLogger("visual_search")

# Where the server-rendered results and errors travel from SearchByPhotoView to the widget.
RESULTS_KEY = "visual_search_results"
ERROR_KEY = "visual_search_error"
CONFIDENT_KEY = "visual_search_confident"
# The id of the widget whose form was posted (its hidden field WIDGET_FIELD), so only it shows them.
WIDGET_KEY = "visual_search_widget"
WIDGET_FIELD = "vs_widget"

MODES = ("inline", "compact")
# The no-JavaScript form's box fields (photo_search.BOX_FIELDS' order), each with its label and
# the photo's own edge as its value: a customer changes only the edge that matters, and the
# untouched fields (0, 0, 1, 1) are the whole photo, which searches as no box does.
BOX_LABELS = (gettext_lazy("Left edge"), gettext_lazy("Top edge"), gettext_lazy("Right edge"), gettext_lazy("Bottom edge"))
BOX_EDGES = ("0", "0", "1", "1")
DEFAULT_IDS = {"inline": "vs", "compact": "vs-compact"}
# Ids and results already handed out while rendering one page, and whether widget.css and widget.js
# are linked yet; kept on the request.
PAGE_STATE = "_visual_search_widgets"
STYLESHEET = "visual_search/widget.css"
SCRIPT = "visual_search/widget.js"


def customer_messages(limit: int | None = None) -> dict[str, Any]:
    """What the page and the script say to the customer for each API error ``code`` and state, in
    the active language (``visual_search/locale``; docs/customers.md#languages).

    The JSON API keeps its own ``detail`` (written for developers as much as for people); the
    widget shows these words instead. A code missing here shows the API's ``detail``. The script
    fills in ``{percent}`` and the box's ``{x0}``... (each ``percent``'s ``{n}``) itself; ``results`` holds the status line for
    each count the widget can show (1 to its ``limit``, default ``API_DEFAULT_LIMIT``), so that languages
    with several plural forms read right without a JavaScript catalogue.
    """
    megabytes = f"{max_upload_bytes() / (1024 * 1024):g}"
    setup = _("This search form does not work right now. Please try the search page.")
    try:
        most = max(1, min(int(limit or settings.API_DEFAULT_LIMIT), int(settings.API_MAX_LIMIT)))
    except (TypeError, ValueError):  # a template's limit="many": the API says so when searching
        most = int(settings.API_DEFAULT_LIMIT)
    return {
        "required": _("Choose a photo first."),
        "invalid_image": _("That file is not an image we can read. Choose a JPEG, PNG or WebP photo."),
        # {format} is the kind of file refused, as the API's "format" names it: SVG, PDF, HEIC...
        "unsupported_format": _("{format} files are not accepted here. Choose a JPEG, PNG or WebP photo."),
        "image_too_large": _("That photo is too large. Choose one under %(megabytes)s MB.") % {"megabytes": megabytes},
        "file_too_large": _("That photo is larger than %(megabytes)s MB. Choose a smaller one.") % {"megabytes": megabytes},
        "too_many_pixels": _("That photo has too many pixels. Choose a smaller one."),
        "blank_image": _("That photo looks blank. Take one with the product in view."),
        # A proxy in front of the shop refused the upload's size, even sent again smaller.
        "upload_too_large": _("That photo is too large to send here. Choose a smaller one."),
        "invalid_box": _("The part of the photo to search is not valid. Search the whole photo, or draw the box again."),
        "length_required": setup,
        "too_many_fields": setup,
        # The customer cannot fix these: the shop's widget was set up wrong. Say so kindly; the log has the rest.
        "invalid_limit": setup,
        "invalid_filter": setup,
        # API_PERMISSION_CLASSES asks customers to sign in (IsAuthenticated): DRF answers not_authenticated.
        "not_authenticated": _("Sign in to search by photo."),
        "throttled": _("Too many searches in a short time. Please wait a minute and try again."),
        # {when} is the time to wait as the customer's browser writes it in this language:
        # "in 30 seconds", "in 2 minutes" (German "in 30 Sekunden", French "dans 30 secondes").
        "throttled_wait": _("Too many searches in a short time. Please try again {when}."),
        "unavailable": _("Search by photo is not available right now. Please try again later."),
        # 503 "busy": more searches at once than the shop's server takes (MAX_CONCURRENT_SEARCHES).
        "busy": _("Many customers are searching by photo right now. Please try again in a moment."),
        # A 503 with Retry-After (the shop's model loading, its database restarting): {when} as
        # for "throttled_wait". "unavailable_again": the widget searches again by itself then.
        "unavailable_wait": _("Search by photo is not available right now. Please try again {when}."),
        "unavailable_again": _("Search by photo is not available right now. It searches again by itself {when}."),
        # The same for 503 "busy" (a burst of searches, MAX_CONCURRENT_SEARCHES): {when} as above.
        "busy_wait": _("Many customers are searching by photo right now. Please try again {when}."),
        "busy_again": _("Many customers are searching by photo right now. It searches again by itself {when}."),
        "network": _("The search did not reach the shop. Check your connection and try again."),
        "failed": _("The search did not work this time. Please try again."),
        "searching": _("Searching…"),
        # Shown while a search on a slow connection goes on; the search is still running.
        "slow": _("Still searching… A slow connection can take a minute."),
        "timeout": _("The shop did not answer in time. Your photo is kept: try again."),
        "retry": _("Try again"),
        # The name of the bar that shows how far the photo's upload is (on a slow connection).
        "uploading": _("Sending your photo"),
        "offline": _("You are offline. The search starts again when you are back online."),
        "none": _("Nothing looks like that photo. Try another angle, or a photo with the product filling the frame."),
        "unsure": _("No confident match. Possible matches, best first."),
        "results": {str(count): results_found(count) for count in range(1, most + 1)},
        # {percent} is a whole number: 87 for a score of 0.87.
        "match": _("{percent}% match"),
        "box_whole": _("The box covers the whole photo."),
        # {x0} to {x1} and {y0} to {y1}: the box's edges as percentages of the photo ("25%"), each
        # written as "percent" says.
        "box_where": _("The box covers {x0} to {x1} across and {y0} to {y1} down the photo."),
        # What a screen reader hears as a key moves the box: only the edges that moved, written as
        # "percent" says ("5% to 100% across").
        "box_across": _("{x0} to {x1} across"),
        "box_down": _("{y0} to {y1} down"),
        # {n} is a whole number: one edge of the box as a share of the photo, 25 for a quarter.
        "percent": _("{n}%"),
        # Not words: how this language writes a number, for the prices of the cards the script makes.
        "number": number_shape(),
    }


# A sentence only this package has (the widget's hint): where the active language's catalogues
# translate it, the package's words are in that language.
WORDS_PROBE = "Take or choose a photo of a product."


def words_language() -> str:
    """The language the widget's own words are in for the active language, for their ``lang``
    (WCAG 3.1.2, language of parts): the active language where a catalogue translates the package's
    words (``visual_search/locale``: de, fr, a "de-at" page's German included; or the shop's own,
    through ``LOCALE_PATHS``) or where it is English; ``LANGUAGE_CODE`` where Django fell back to its
    catalogue (a Spanish visitor of a German shop reads German words); else "en" (a Spanish page
    shows them in English). Asked afresh each time: the active language changes per request."""
    language = translation.get_language()
    if not language:  # translation deactivated: the msgids, English
        return "en"
    if language.lower().startswith("en"):  # Django gives English no fallback: its words are the msgids
        return language
    words = _(WORDS_PROBE)
    if words == WORDS_PROBE:
        return "en"
    default = django_settings.LANGUAGE_CODE
    if _primary(default) not in (_primary(language), "en"):
        with translation.override(default):
            if _(WORDS_PROBE) == words:  # the same sentence: Django's fallback to LANGUAGE_CODE's catalogue gave it
                return default
    return language


def borrowed_language(msgid: str, words: str, page: str) -> str:
    """``page`` where the active language's catalogues translate ``msgid`` otherwise than the
    package's words' language does: another app's catalogue has it (Django admin's "Buscar" for the
    widget's "Search", "Cerrar" for "Close", in a Spanish shop); "" where it is the widget's word."""
    if words == page:
        return ""
    text = _(msgid)
    with translation.override(words):
        own = _(msgid)
    return page if text != own else ""


def page_language() -> str:
    """The page's language (the active one): the shop's names, prices and links on the result cards
    are in it, and the API is asked in it."""
    return translation.get_language() or django_settings.LANGUAGE_CODE


def _primary(language: str) -> str:
    """"de" for "de-at" and "de_AT"."""
    return language.replace("_", "-").split("-")[0].lower()


def number_shape() -> dict[str, Any]:
    """How the active language writes a number (Django's formats: ``DECIMAL_SEPARATOR``,
    ``THOUSAND_SEPARATOR`` and ``NUMBER_GROUPING``, grouped only under ``USE_THOUSAND_SEPARATOR``),
    so the script writes a price the JSON carries as a number as :func:`price_text` does."""
    grouping = formats.get_format("NUMBER_GROUPING") if django_settings.USE_THOUSAND_SEPARATOR else 0
    return {
        "decimal": str(formats.get_format("DECIMAL_SEPARATOR")),
        "thousands": str(formats.get_format("THOUSAND_SEPARATOR")),
        "grouping": grouping if isinstance(grouping, int) else list(grouping),
        # The currencies whose prices have other than two decimals (results.CURRENCY_DECIMALS).
        "currency_decimals": CURRENCY_DECIMALS,
    }


def price_text(price: Any, currency: Any = None) -> str:
    """A result's price as every card writes it, the server's and the script's alike: a string as
    the shop's adapter gave it ("12,90", already the customer's way); a number in the active
    language (``number_shape``: "12,90" on a German page) with the decimals of the result's
    ``currency`` (:func:`~visual_search.results.currency_decimals`: "1,200" for JPY, "1.500" for KWD,
    two without one). A ``Decimal("12.90")`` goes into the JSON as the number 12.9: the script wrote
    "12.9" where the page wrote "12,90"."""
    if price is None:
        return ""
    if isinstance(price, (int, float, Decimal)) and not isinstance(price, bool):
        decimals = currency_decimals(currency)
        return formats.number_format(rounded(price, decimals), decimals)
    return str(price)


def written_price(item: Mapping[str, Any]) -> str:
    """A result's price as every card writes it (the server's, the script's, a chat's caption),
    currency included: the adapter's ``price_display`` as it is where it gives one (Oscar's: "€3.10",
    as Oscar's product page writes it), else :func:`price_text` and the currency's code ("3.10 EUR");
    "" for no price."""
    price = item.get("price")
    if price is None or price == "":
        return ""
    if item.get("price_display"):
        return str(item["price_display"])
    currency = item.get("currency")
    return price_text(price, currency) + (f" {currency}" if currency else "")


def rounded(number: float | Decimal, decimals: int) -> float | Decimal:
    """``number`` rounded half up to ``decimals`` places, on its decimal digits (a float's shortest
    form, as JSON carries it to the script, whose ``number`` rounds the same): 1098.9 yen is 1099,
    1.005 is 1.01. Django's ``number_format`` cuts the digits instead (1098 and 1.00), where the
    script's ``toFixed`` rounded. A number ``Decimal`` cannot round (infinite, huge) is left as is."""
    exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    try:
        return exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP) if exact.is_finite() else number
    except InvalidOperation:
        return number


def results_found(count: int) -> str:
    """The status line over ``count`` confident results."""
    return ngettext("%(count)d result, best match first.", "%(count)d results, best match first.", count) % {"count": count}


def match_percent(score: float | None) -> str:
    """A result's score as the cards show it: "87% match" (in the active language), rounded half up
    as the script's ``Math.round`` does; "<1% match" for a chance above 0 that rounds to 0 (a
    possible match is not a certain miss)."""
    if score is None:
        return ""
    score = float(score)
    percent = math.floor(score * 100 + 0.5)
    return _("{percent}% match").format(percent="<1" if percent == 0 and score > 0 else percent)


# The words for a passing failure whose Retry-After is known: "... Please try again in 30 seconds."
# Lazy, so the plural form is chosen for the number under "seconds" when the words are written.
RETRY_AFTER_MESSAGES = {
    "throttled": ngettext_lazy(
        "Too many searches in a short time. Please try again in %(seconds)d second.",
        "Too many searches in a short time. Please try again in %(seconds)d seconds.",
        "seconds",
    ),
    "unavailable": ngettext_lazy(
        "Search by photo is not available right now. Please try again in %(seconds)d second.",
        "Search by photo is not available right now. Please try again in %(seconds)d seconds.",
        "seconds",
    ),
    "busy": ngettext_lazy(
        "Many customers are searching by photo right now. Please try again in %(seconds)d second.",
        "Many customers are searching by photo right now. Please try again in %(seconds)d seconds.",
        "seconds",
    ),
}


def customer_message(error: PhotoSearchError) -> str:
    """The words for a failed search on the page, in the active language; throttling and a passing
    unavailability keep their "try again in N seconds" (``retry_after``)."""
    if error.reason:  # the detail is a damaged file's reason, the customer's words already (as the API says it)
        return error.detail
    words = customer_messages().get(error.code)
    if error.code == "unsupported_format":
        return words.format(format=error.format) if error.format else error.detail
    if error.code in RETRY_AFTER_MESSAGES and error.retry_after:
        return RETRY_AFTER_MESSAGES[error.code] % {"seconds": error.retry_after}
    return error.detail if words is None else words


def _reverse(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def page_state(context: Any) -> dict[str, Any]:
    """What the widgets and lists rendered so far took on this page (element ids, the server's
    results, the stylesheet's link): on the request; without one, on the template context, where
    the widget's and the list's own templates find it too."""
    request = context.get("request")
    if request is not None:
        if not hasattr(request, PAGE_STATE):
            setattr(request, PAGE_STATE, new_page_state())
        return getattr(request, PAGE_STATE)
    if isinstance(context.get(PAGE_STATE), dict):  # handed down to the tag's own template
        return context[PAGE_STATE]
    dicts = getattr(context, "dicts", None)
    if dicts:  # the bottom dict of a Context lives as long as the render
        return dicts[0].setdefault(PAGE_STATE, new_page_state())
    return new_page_state()


def new_page_state() -> dict[str, Any]:
    return {"ids": set(), "shown": False, "linked": set()}


def once_per_page(context: Any, path: str, tag: str) -> str:
    """``tag`` (HTML whose ``{}`` is the URL of the static file ``path``) the first time a page asks
    for ``path``; nothing after."""
    linked = page_state(context).setdefault("linked", set())
    if path in linked:
        return ""
    linked.add(path)
    return format_html(tag, static(path))


def stylesheet_link(context: Any) -> str:
    """``<link rel="stylesheet">`` to widget.css, the first time a page asks for it; nothing after
    (``{% visual_search_stylesheet %}``). A page with a widget and a similar products list, or two
    widgets, linked it once for each; a layout that links it in its ``<head>`` leaves them none to link."""
    return once_per_page(context, STYLESHEET, '<link rel="stylesheet" href="{}">')


def csrf_cookie_name() -> str:
    """The cookie widget.js reads the visitor's current CSRF token from (``data-csrf-cookie``): the
    token a page was rendered with is another visitor's in a cached fragment. Empty where a script
    cannot read it (``CSRF_USE_SESSIONS``, ``CSRF_COOKIE_HTTPONLY``)."""
    if django_settings.CSRF_USE_SESSIONS or django_settings.CSRF_COOKIE_HTTPONLY:
        return ""
    return django_settings.CSRF_COOKIE_NAME


def script_tag(context: Any) -> str:
    """``<script defer>`` of widget.js, the first time a page asks for it; nothing after
    (``{% visual_search_script %}``). A page with several widgets fetched it once per widget (the
    script sets itself up once, and starts every widget on the page, those added later included)."""
    return once_per_page(context, SCRIPT, '<script src="{}" defer></script>')


def unique_id(state: dict[str, Any], wanted: str) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... when a widget on the page already has it."""
    candidate, number = wanted, 1
    while candidate in state["ids"]:
        number += 1
        candidate = f"{wanted}-{number}"
    state["ids"].add(candidate)
    return candidate


def _shows_results(context: Mapping[str, Any], state: dict[str, Any], widget_id: str, mode: str, main: bool) -> bool:
    """Whether the server's results belong in this widget: the one whose form was posted; else the
    page's ``main`` widget (a form posted from another page); else, for a form without the widget
    field (an old template), the first inline widget. Never two widgets."""
    if state["shown"] or (context.get(RESULTS_KEY) is None and context.get(ERROR_KEY) is None):
        return False
    posted = context.get(WIDGET_KEY)
    if posted == widget_id or main or (not posted and mode == "inline"):
        state["shown"] = True
        return True
    return False


def _usable_limit(limit: Any) -> int | None:
    """The widget's ``limit`` as the API takes it: a limit the API refuses would fail every search
    with "this search form does not work", so it is brought within 1 to ``API_MAX_LIMIT``, with a
    warning; None (the API's default) for none or for one that is not a number."""
    if limit in (None, ""):
        return None
    most = int(settings.API_MAX_LIMIT)
    try:
        number = int(limit)
    except (TypeError, ValueError):
        logger.warning("visual_search_widget: limit=%r is not a whole number; using the default (API_DEFAULT_LIMIT).", limit)
        return None
    usable = min(max(number, 1), most)
    if usable != number:
        logger.warning("visual_search_widget: limit=%s is outside 1 to API_MAX_LIMIT (%s), which the API refuses; using %s.",
                       number, most, usable)
    return usable


def widget_context(
    context: Any = None,
    *,
    action: str | None = None,
    api_url: str | None = None,
    limit: int | None = None,
    camera: bool = True,
    label: str | None = None,
    widget_id: str | None = None,
    mode: str = "inline",
    heading: bool = True,
    main: bool = False,
    **filters: Any,
) -> dict[str, Any]:
    """Context of ``visual_search/widget.html``.

    ``mode`` is ``"inline"`` (the form, with its results below it) or ``"compact"`` (a camera
    button that opens the form and its results in a dialog; without JavaScript a link to the
    search page). ``action`` is where the form posts with JavaScript off (default: the
    ``visual_search_pages`` page); ``api_url`` where the script sends the photo (default: the
    ``visual_search`` API). ``widget_id`` is the prefix of the element ids ("vs", compact
    "vs-compact"); a second widget on the page gets "-2" added. ``heading=False`` leaves out the
    visible heading (the page has one); ``main=True`` marks the page's own widget, which shows
    results posted from a widget on another page. Keyword arguments named like an
    ``API_FILTERS`` parameter (``category="milk"``) narrow every search from this widget;
    others are ignored with a warning in the log, as is a ``limit`` the API would refuse (brought
    within 1 to ``API_MAX_LIMIT``).
    """
    context = context if context is not None else {}
    request = context.get("request")
    if mode not in MODES:
        logger.warning("visual_search_widget: unknown mode %r, using 'inline'; the modes are %s.", mode, ", ".join(MODES))
        mode = "inline"
    state = page_state(context)
    widget_id = unique_id(state, widget_id or DEFAULT_IDS[mode])
    action = action or _reverse("visual_search_pages:search") or (request.path if request else "")
    api_url = api_url if api_url is not None else _reverse("visual_search:search")
    if api_url is None:
        logger.warning("The visual search widget found no API URL; include visual_search.api.urls to search without reloading.")
    allowed = filter_lookups()
    unknown = sorted(name for name in filters if name not in allowed)
    if unknown:  # a typo (catgory=...) would search the whole catalogue without a word
        logger.warning(
            "visual_search_widget: %s is neither an option nor a filter named in VISUAL_SEARCH['API_FILTERS'] (%s); ignored.",
            ", ".join(f"{name}=" for name in unknown), ", ".join(sorted(allowed)) or "none",
        )
    limit = _usable_limit(limit)
    words, page = words_language(), page_language()
    mine = _shows_results(context, state, widget_id, mode, main)
    results = context.get(RESULTS_KEY) if mine else None
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "csrf_cookie": csrf_cookie_name(),
        "action": action,
        "api_url": api_url or "",
        "limit": limit,
        "camera": camera,
        "label": label or _("Search by photo"),
        "heading": heading,
        "mode": mode,
        "compact": mode == "compact",
        "widget_id": widget_id,
        "widget_field": WIDGET_FIELD,
        # The widget's words are in one language (its root's lang), the shop's results (names, prices,
        # links: the API asked in it) in the page's: words_language(), and the active language.
        "words_language": words,
        "page_language": page,
        # A label="..." the shop's template translated is in the page's language, not the widget's.
        "label_language": page if label and page != words else "",
        # Words so common that other apps' catalogues translate them: in the page's language then.
        "search_language": borrowed_language("Search", words, page),
        "close_language": borrowed_language("Close", words, page),
        "filters": {name: value for name, value in filters.items() if name in allowed and value not in (None, "")},
        "max_bytes": max_upload_bytes(),
        "max_megabytes": f"{max_upload_bytes() / (1024 * 1024):g}",
        # Whether a HEIC photo the browser cannot turn into a JPEG (Chrome, Firefox) is decoded here:
        # where not, the widget says so at once instead of sending megabytes to hear it.
        "accepts_heic": HEIF in (str(name).upper() for name in settings.ALLOWED_FORMATS) and heif_support(),
        "messages_json": json.dumps(customer_messages(limit), ensure_ascii=False),
        "box_fields": [{"name": n, "label": t, "value": v} for n, t, v in zip(BOX_FIELDS, BOX_LABELS, BOX_EDGES)],
        "results": results,
        "confident": context.get(CONFIDENT_KEY, True),
        "error": context.get(ERROR_KEY) if mine else None,
        "searched": results is not None,
        # The page's state, for {% visual_search_stylesheet %} in widget.html where there is no request.
        PAGE_STATE: state,
    }
