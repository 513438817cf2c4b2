"""The slow part of a message, run after the webhook answered: read it, search, reply.

Never raises: whatever goes wrong (the service's API, the search) is logged on the ``visual_search``
logger, and the customer gets a sentence when one can still be sent.
"""

from __future__ import annotations

import logging

from django.apps import apps
from django.conf import settings as django_settings
from django.utils import translation
from django.views.decorators.debug import sensitive_variables

from visual_search.conf import settings as visual_search_settings
from visual_search.embeddings import images
from visual_search.exceptions import BlankImage, ImageTooLarge, InvalidImage, TooManySearches
from visual_search.registry import search_model
from visual_search.results import describe
from visual_search.search import is_confident, search_by_image

from . import replies
from .messages import FILE, PHOTO, STICKER, TEXT, IncomingMessage, masked
from .messenger import FileTooLarge, Messenger
from .site import anonymous_request, links_below, site_request

logger = logging.getLogger("visual_search")

START_COMMANDS = ("/start",)
HELP_COMMANDS = ("/help",)

# The Pillow format of each image MIME type a service may announce, to refuse a format before its
# download. A type not listed here is fetched, and the decoder decides.
MIME_FORMATS = {
    "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF",
    "image/webp": "WEBP", "image/bmp": "BMP", "image/x-ms-bmp": "BMP", "image/tiff": "TIFF",
    "image/heic": "HEIF", "image/heif": "HEIF", "image/avif": "AVIF", "image/svg+xml": "SVG",
    "image/x-icon": "ICO", "image/vnd.microsoft.icon": "ICO", "image/vnd.adobe.photoshop": "PSD",
    "image/x-eps": "EPS", "application/postscript": "EPS", "image/jp2": "JPEG2000",
}
# A format as the customer knows it, where Pillow's name is another: an iPhone's photo is "HEIC".
CUSTOMER_NAMES = {"HEIF": "HEIC"}


def language_of(message: IncomingMessage) -> str:
    """The language to answer in: the customer's (as the service tells it, ``"de"``, ``"pt-br"``) when
    the shop offers it (``settings.LANGUAGES``, as ``LocaleMiddleware`` chooses for a browser), else
    the shop's ``LANGUAGE_CODE``."""
    if message.language:
        try:
            return translation.get_supported_language_variant(message.language.replace("_", "-").lower())
        except LookupError:
            pass
    return django_settings.LANGUAGE_CODE


def handle(messenger: Messenger, message: IncomingMessage, site_url: str | None = None, limited: bool = False) -> None:
    """Answer ``message`` in the customer's language (:func:`language_of`): "please wait" when
    ``limited``, results for a photo, a helpful sentence otherwise."""
    with translation.override(language_of(message)), links_below(site_url):
        _answer(messenger, message, site_url, limited)


def _answer(messenger: Messenger, message: IncomingMessage, site_url: str | None, limited: bool) -> None:
    try:
        if limited:
            messenger.reply_text(message, replies.please_wait())
        elif message.kind == PHOTO:
            answer_photo(messenger, message, site_url)
        else:
            messenger.reply_text(message, answer_to(message))
    except Exception:
        logger.exception("%s: answering a %s message in chat %s failed", messenger.name, message.kind, masked(message.chat_id))


def answer_to(message: IncomingMessage) -> str:
    """The sentence for what is not a photo to search."""
    command = message.text.strip().lower() if message.kind == TEXT else ""
    if command.startswith(HELP_COMMANDS):
        return replies.usage()
    if command.startswith(START_COMMANDS):
        return replies.welcome()
    if message.kind == STICKER:
        return replies.sticker()
    if message.kind == FILE:
        return replies.not_an_image()
    return replies.help_text()


@sensitive_variables("photo")  # the customer's photo, out of error reports (docs/privacy.md)
def answer_photo(messenger: Messenger, message: IncomingMessage, site_url: str | None) -> None:
    limit = messenger.max_photo_bytes
    if message.file_size and message.file_size > limit:
        messenger.reply_text(message, replies.too_large(limit))
        return
    if refused := refused_format(message.mime_type):
        messenger.reply_text(message, replies.unreadable(refused))
        return
    try:
        photo = messenger.download(message)
        request = site_request(site_url)
        # Always as a customer: without a request the Python API shows every object, hidden ones too.
        customer = request or anonymous_request()
        results = search_by_image(photo, searched_model(messenger), limit=int(messenger.settings.RESULTS), request=customer)
    except (FileTooLarge, ImageTooLarge):
        messenger.reply_text(message, replies.too_large(limit))
        return
    except BlankImage:  # a lens cap: "could not read that image" would be wrong
        messenger.reply_text(message, replies.blank())
        return
    except InvalidImage as exc:  # its own sentence is English: the customer's language instead
        messenger.reply_text(message, replies.unreadable(getattr(exc, "kind", "")))
        return
    except TooManySearches:  # a burst: it passes, and capacity logs it once a minute (no traceback)
        messenger.reply_text(message, replies.busy())
        return
    except Exception:
        logger.exception("%s: search by photo for chat %s failed", messenger.name, masked(message.chat_id))
        messenger.reply_text(message, replies.failed())
        return
    if not results:
        messenger.reply_text(message, replies.no_results())
        return
    if not is_confident(results):
        messenger.reply_text(message, replies.unsure())
    messenger.reply_with_results(message, describe(results, request))


def refused_format(mime_type: str) -> str:
    """The format ("SVG", "HEIC") of a file the search would refuse, as the service announced its
    type: not in ``ALLOWED_FORMATS``, or one this server cannot decode (HEIC without pillow-heif,
    AVIF under a Pillow without its plugin); "" when it may be searched. Saves downloading a file
    only to refuse it."""
    kind = MIME_FORMATS.get(mime_type.split(";")[0].strip().lower(), "")
    allowed = {str(name).upper() for name in visual_search_settings.ALLOWED_FORMATS}
    return "" if not kind or (kind in allowed and images.decodable(kind)) else CUSTOMER_NAMES.get(kind, kind)


def searched_model(messenger: Messenger):
    """The messenger's ``MODEL``, else the JSON API's (``VISUAL_SEARCH["API_MODEL"]`` or the first registration's)."""
    label = messenger.settings.MODEL
    return apps.get_model(label) if label else search_model()
