"""WhatsApp as a :class:`~visual_search.contrib.messaging.messenger.Messenger`: the photo fetched
(Graph's media URL, then the file, with "typing..." shown meanwhile), text replies, and the results
as one picture message each, captioned with name, price, "% match" and link, quoting the customer's photo.

WhatsApp has no albums. One picture per result, best first and numbered, is what a customer compares
with the photo they sent; the numbers keep them readable should WhatsApp deliver them out of order.
The pictures are uploaded from the shop's storage (Graph's media upload, the id cached a day) rather
than sent as links: a link WhatsApp fails to fetch is reported only later, in a "failed" status, and
the customer would get nothing, while a failed upload is known at once and the result goes out as text.
A picture not in the storage (a CDN's) is sent as its link when the host is public.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables

from visual_search.contrib.messaging import replies
from visual_search.contrib.messaging.messages import IncomingMessage, masked
from visual_search.contrib.messaging.messenger import FileTooLarge, Messenger
from visual_search.contrib.messaging.pictures import is_private_host, stored_bytes, stored_name
from visual_search.contrib.messaging.replies import joined

from . import client
from .client import GraphAPIError
from .conf import DEFAULTS, IMAGE_SEND_LIMIT, SETTING

logger = logging.getLogger("visual_search")

TEXT_LIMIT = 4096  # a text message's body, in characters
# Meta keeps an uploaded media id for 30 days; the bot reuses one for a day.
UPLOADED_FOR = 24 * 3600
_UPLOADED_KEY = "visual_search:whatsapp:media:"
# Errors after which sending the next result cannot do better: stop, the log says why.
_HOPELESS = (190, 131047, 131030, 131026, 10, 3)


class WhatsAppMessenger(Messenger):
    """The shop's WhatsApp business number (``VISUAL_SEARCH_WHATSAPP``)."""

    name: ClassVar[str] = "whatsapp"
    settings_name: ClassVar[str] = SETTING
    defaults: ClassVar[dict[str, Any]] = DEFAULTS
    # Customers' photos reach WhatsApp's servers at most 5 MB (images) or 100 MB (documents); the
    # app's MAX_UPLOAD_BYTES is the limit that matters.
    max_download_bytes: ClassVar[int | None] = None

    @sensitive_variables("data")  # the customer's photo, out of error reports (docs/privacy.md)
    def download(self, message: IncomingMessage) -> bytes:
        limit = self.max_photo_bytes
        self.show_working(message)
        try:
            phone = quote(str(self.settings.PHONE_NUMBER_ID or ""))
            info = client.with_retry(lambda: client.call("GET", f"{quote(message.file_id)}?phone_number_id={phone}"))
            size = info.get("file_size")
            if isinstance(size, (int, str)) and str(size).isdigit() and int(size) > limit:
                raise FileTooLarge(f"{size} bytes")
            data = client.with_retry(lambda: client.download(str(info.get("url") or ""), limit))
        except GraphAPIError as exc:
            self.log_error(exc, f"fetching the photo of {masked(message.chat_id)}")
            raise
        if data is None:
            raise FileTooLarge(f"over {limit} bytes")
        return data

    def show_working(self, message: IncomingMessage) -> None:
        """The customer's photo marked read, and "typing..." shown while it is fetched and searched
        (WhatsApp shows it for up to 25 seconds or until the answer). Only a courtesy: a failure is
        logged, and the search goes on."""
        if not message.event_id:
            return
        try:
            self._post({"status": "read", "message_id": message.event_id, "typing_indicator": {"type": "text"}})
        except (GraphAPIError, ConnectionError) as exc:
            logger.info("WhatsApp did not show 'typing' to %s: %s", masked(message.chat_id), exc)

    def reply_text(self, message: IncomingMessage, text: str) -> None:
        try:
            self.send(message, {"type": "text", "text": {"body": text[:TEXT_LIMIT], "preview_url": False}})
        except (GraphAPIError, ConnectionError) as exc:
            self.log_error(exc, f"sending a message to {masked(message.chat_id)}")

    def reply_with_results(self, message: IncomingMessage, results: Sequence[dict[str, Any]]) -> None:
        """One picture message per result, best first; the results without a picture (or whose
        picture WhatsApp refused) in one text message after them."""
        texts = []
        for rank, item in enumerate(results, start=1):
            text = replies.caption(item, rank)
            try:
                image = self.image_of(str(item.get("image_url") or ""))
                if image is None:
                    texts.append(text)
                    continue
                self.send(message, {"type": "image", "image": {**image, "caption": text}})
            except ConnectionError as exc:
                self.log_error(exc, f"sending results to {masked(message.chat_id)}")
                return
            except GraphAPIError as exc:
                self.log_error(exc, f"sending results to {masked(message.chat_id)}")
                if exc.code in _HOPELESS or exc.status == 401 or exc.is_rate_limit:
                    return
                texts.append(text)
        for text in joined(texts, TEXT_LIMIT):
            self.reply_text(message, text)

    def image_of(self, url: str) -> dict[str, str] | None:
        """``{"id": media id}`` for a picture uploaded from the storage, ``{"link": url}`` for one on a
        public host that is not, None for none (the result goes out as text)."""
        if not url.startswith(("http://", "https://")):
            return None
        key = _UPLOADED_KEY + hashlib.sha256(f"{self.settings.PHONE_NUMBER_ID}:{_picture_key(url)}".encode()).hexdigest()[:40]
        media_id = _cache_get(key)
        if media_id:
            return {"id": media_id}
        data = stored_bytes(url, IMAGE_SEND_LIMIT)
        if data is not None and image_type(data):
            try:
                media_id = self.upload(data, image_type(data))
            except GraphAPIError as exc:
                if exc.code in _HOPELESS or exc.status == 401:
                    raise
                logger.warning("WhatsApp refused the picture %s (%s)", url, exc)
            else:
                _cache_set(key, media_id)
                return {"id": media_id}
        host = urlsplit(url).hostname or ""
        if url.startswith("https://") and not is_private_host(host) and data is None:
            return {"link": url}
        return None

    def upload(self, data: bytes, content_type: str) -> str:
        phone = quote(str(self.settings.PHONE_NUMBER_ID or ""))
        extension = "png" if content_type == "image/png" else "jpg"
        answer = client.with_retry(lambda: client.upload(f"{phone}/media", {"messaging_product": "whatsapp", "type": content_type},
                                                         f"result.{extension}", content_type, data))
        return str(answer["id"])

    def send(self, message: IncomingMessage, content: dict[str, Any]) -> dict[str, Any]:
        """A message to the customer, quoting theirs when the adapter set ``reply_to`` (a photo)."""
        payload = {"recipient_type": "individual", "to": message.chat_id, **content}
        if message.reply_to:
            payload["context"] = {"message_id": message.reply_to}
        return client.with_retry(lambda: self._post(payload))

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        phone = quote(str(self.settings.PHONE_NUMBER_ID or ""))
        return client.call("POST", f"{phone}/messages", {"messaging_product": "whatsapp", **payload})

    def log_error(self, exc: Exception, doing: str) -> None:
        if isinstance(exc, GraphAPIError):
            level = logging.ERROR if exc.status == 401 or exc.code in client.TOKEN_CODES | client.PERMISSION_CODES else logging.WARNING
            logger.log(level, "WhatsApp: %s failed: %s; %s", doing, exc, exc.advice())
        else:
            logger.warning("WhatsApp: %s failed: %s: %s", doing, type(exc).__name__, exc)


def image_type(data: bytes) -> str:
    """``image/jpeg`` or ``image/png`` (what WhatsApp's image messages take), else ""."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    return ""


def _picture_key(url: str) -> str:
    """What an uploaded picture is remembered by: for a file of the shop's storages, its URL without
    the query string, else the whole URL. A private bucket signs each URL afresh (a new query string
    every second): keyed by the whole URL, no upload was ever reused, and each reply uploaded its
    pictures again. Keyed by the file's name alone, two buckets' files of one name shared an upload,
    and a reply showed the other bucket's picture; the URL's host and path tell them apart."""
    try:
        name = stored_name(url)
    except Exception:  # noqa: BLE001 - a storage that makes no URL here: the URL itself
        name = None
    return "storage:" + urlsplit(url)._replace(query="", fragment="").geturl() if name is not None else url


def _cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception:  # noqa: BLE001 - a cache that is down: upload again
        return None


def _cache_set(key: str, value: str) -> None:
    try:
        cache.set(key, value, UPLOADED_FOR)
    except Exception as exc:  # noqa: BLE001
        logger.info("WhatsApp: cannot remember the uploaded picture: %s", exc)
