"""Telegram as a :class:`~visual_search.contrib.messaging.messenger.Messenger`: getFile and download
(with "sending photo..." shown meanwhile), sendMessage, and the results as one album (sendMediaGroup,
each picture's caption: name, price, "% match", link), answering the photo in a group chat."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.cache import cache
from telegram import Bot, InputMediaPhoto, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from visual_search.contrib.messaging import replies
from visual_search.contrib.messaging.messages import IncomingMessage, masked
from visual_search.contrib.messaging.messenger import FileTooLarge, Messenger
from visual_search.contrib.messaging.pictures import is_private_host, stored_bytes
from visual_search.contrib.messaging.replies import joined

from . import client
from .conf import DEFAULTS, GETFILE_LIMIT, SETTING

logger = logging.getLogger("visual_search")

ALBUM_LIMIT = 10  # sendMediaGroup takes 2 to 10 pictures
TEXT_LIMIT = 4096  # sendMessage's limit, in characters
UPLOAD_LIMIT = 10 * 1024 * 1024  # a photo uploaded to sendPhoto: at most 10 MB
# A host Telegram could not fetch a picture from is not offered to it again for this long: its
# pictures are uploaded from the shop's storage instead (after that, one URL is tried again).
UNREACHABLE_FOR = 3600
_UNREACHABLE_KEY = "visual_search:telegram:unreachable:"
# Telegram's 400s for a picture URL it could not fetch (and not for a bad chat, say).
_FETCH_ERRORS = ("http url", "url content", "web page", "webpage")


class TelegramMessenger(Messenger):
    """The shop's Telegram bot (``VISUAL_SEARCH_TELEGRAM``)."""

    name: ClassVar[str] = "telegram"
    settings_name: ClassVar[str] = SETTING
    defaults: ClassVar[dict[str, Any]] = DEFAULTS
    max_download_bytes: ClassVar[int] = GETFILE_LIMIT

    def download(self, message: IncomingMessage) -> bytes:
        limit = self.max_photo_bytes

        async def fetch(bot: Bot) -> bytes:
            await show_working(bot, message.chat_id)
            file = await client.with_retry(lambda: bot.get_file(message.file_id))
            if file.file_size and file.file_size > limit:
                raise FileTooLarge(f"{file.file_size} bytes")
            return bytes(await file.download_as_bytearray())

        try:
            return client.call(fetch)
        except BadRequest as exc:
            # getFile answers 400 "file is too big" for files over its 20 MB whatever the update said.
            if "too big" in str(exc).lower():
                raise FileTooLarge(str(exc)) from exc
            raise

    def reply_text(self, message: IncomingMessage, text: str) -> None:
        client.call(lambda bot: self._send_text(bot, message, text))

    def reply_with_results(self, message: IncomingMessage, results: Sequence[dict[str, Any]]) -> None:
        cards = [(replies.caption(item, rank), item.get("image_url") or "") for rank, item in enumerate(results, start=1)]
        client.call(lambda bot: self._send_cards(bot, message, cards))

    async def _send_cards(self, bot: Bot, message: IncomingMessage, cards: list[tuple[str, str]]) -> None:
        """The pictured results as one album, the others (or all, when Telegram refuses the album)
        in one text message. A picture URL Telegram cannot fetch is remembered, and the album sent
        once more with the pictures uploaded from storage."""
        texts = [text for text, _ in cards]
        for _attempt in range(2):
            pictures = [picture_of(url) for _, url in cards]
            album = [(text, picture) for (text, _), picture in zip(cards, pictures) if picture is not None]
            if not album:
                break
            try:
                await self._send_album(bot, message, album)
            except BadRequest as exc:
                urls = [picture for _, picture in album if isinstance(picture, str)]
                if is_fetch_error(exc) and remember_unreachable(urls):
                    logger.warning("Telegram could not fetch the pictures %s (%s); uploading them from the storage "
                                   "for the next %ss", urls[0], exc, UNREACHABLE_FOR)
                    continue
                logger.warning("Telegram refused the pictures (%s); sending the results as text", exc)
                break
            texts = [text for (text, _), picture in zip(cards, pictures) if picture is None]
            break
        for text in joined(texts, TEXT_LIMIT):
            await self._send_text(bot, message, text)

    async def _send_album(self, bot: Bot, message: IncomingMessage, album: list[tuple[str, str | bytes]]) -> None:
        for start in range(0, len(album), ALBUM_LIMIT):
            await self._send_pictures(bot, message, album[start:start + ALBUM_LIMIT])

    async def _send_pictures(self, bot: Bot, message: IncomingMessage, pictures: list[tuple[str, str | bytes]]) -> None:
        reply = reply_parameters(message)
        if len(pictures) == 1:  # an album needs two
            [(text, picture)] = pictures
            await client.with_retry(lambda: bot.send_photo(chat_id=message.chat_id, photo=picture, caption=text,
                                                           reply_parameters=reply))
            return
        media = [InputMediaPhoto(media=picture, caption=text) for text, picture in pictures]
        await client.with_retry(lambda: bot.send_media_group(chat_id=message.chat_id, media=media,
                                                             reply_parameters=reply))

    async def _send_text(self, bot: Bot, message: IncomingMessage, text: str) -> None:
        try:
            await client.with_retry(lambda: bot.send_message(chat_id=message.chat_id, text=text,
                                                             reply_parameters=reply_parameters(message)))
        except TelegramError as exc:
            logger.warning("Telegram did not take a message for chat %s: %s: %s", masked(message.chat_id),
                           type(exc).__name__, exc)


async def show_working(bot: Bot, chat_id: str) -> None:
    """"sending photo..." in the customer's chat while the photo is fetched and searched (VGG16 takes
    a moment, seconds on a cold worker); Telegram shows it until the answer or for 5 seconds. Only a
    courtesy: a failure is logged, and the search goes on."""
    try:
        await bot.send_chat_action(chat_id=chat_id, action=ChatAction.UPLOAD_PHOTO)
    except TelegramError as exc:
        logger.info("Telegram did not show 'sending photo' in chat %s: %s", masked(chat_id), exc)


def reply_parameters(message: IncomingMessage) -> ReplyParameters | None:
    """Answer the customer's photo as a reply where the chat has several people (a group); sent even
    when that message was deleted meanwhile."""
    if not message.reply_to.isdigit():
        return None
    return ReplyParameters(message_id=int(message.reply_to), allow_sending_without_reply=True)


def picture_of(url: str) -> str | bytes | None:
    """What to send as a result's picture: its URL, for Telegram to fetch; the thumbnail's bytes from
    the shop's storage when Telegram cannot fetch from its host (a local or private one, or one that
    failed lately); None for no picture (the result goes out as text)."""
    if not url.startswith(("http://", "https://")):
        return None
    host = (urlsplit(url).hostname or "").lower()
    if not (is_private_host(host) or _cache_get(_UNREACHABLE_KEY + _hashed(host))):
        return url
    return stored_bytes(url, UPLOAD_LIMIT)


def is_fetch_error(exc: BadRequest) -> bool:
    """Telegram's 400 for a picture URL it could not fetch ("wrong file identifier/HTTP URL specified",
    "failed to get HTTP URL content", "wrong type of the web page content")."""
    return any(words in str(exc).lower() for words in _FETCH_ERRORS)


def remember_unreachable(urls: list[str]) -> bool:
    """Remember the hosts of ``urls`` as ones Telegram cannot fetch from (``UNREACHABLE_FOR``); whether
    one was new, i.e. whether sending again (now from the storage) can do better."""
    new = False
    for host in {(urlsplit(url).hostname or "").lower() for url in urls}:
        key = _UNREACHABLE_KEY + _hashed(host)
        if not _cache_get(key):
            new = True
            try:
                cache.set(key, True, UNREACHABLE_FOR)
            except Exception as exc:  # noqa: BLE001 - a cache that is down: the storage is used this time only
                logger.warning("Cannot remember that Telegram cannot fetch from %s: %s", host, exc)
    return new


def _cache_get(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception:  # noqa: BLE001 - a cache that is down: try the URL
        return None


def _hashed(host: str) -> str:
    return hashlib.sha256(host.encode()).hexdigest()[:32]
