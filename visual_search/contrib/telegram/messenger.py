"""Telegram as a :class:`~visual_search.contrib.messaging.messenger.Messenger`: getFile and download,
sendMessage, and one sendPhoto per result (its caption: name, price, link)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from visual_search.contrib.messaging import replies
from visual_search.contrib.messaging.messages import IncomingMessage
from visual_search.contrib.messaging.messenger import FileTooLarge, Messenger

from . import client
from .conf import DEFAULTS, GETFILE_LIMIT, SETTING

logger = logging.getLogger("visual_search")


class TelegramMessenger(Messenger):
    """The shop's Telegram bot (``VISUAL_SEARCH_TELEGRAM``)."""

    name: ClassVar[str] = "telegram"
    settings_name: ClassVar[str] = SETTING
    defaults: ClassVar[dict[str, Any]] = DEFAULTS
    max_download_bytes: ClassVar[int] = GETFILE_LIMIT

    def download(self, message: IncomingMessage) -> bytes:
        limit = self.max_photo_bytes

        async def fetch(bot: Bot) -> bytes:
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
        client.call(lambda bot: self._send_text(bot, message.chat_id, text))

    def reply_with_results(self, message: IncomingMessage, results: Sequence[dict[str, Any]]) -> None:
        async def send_all(bot: Bot) -> None:
            for rank, item in enumerate(results, start=1):
                await self._send_result(bot, message.chat_id, item, rank)

        client.call(send_all)

    async def _send_result(self, bot: Bot, chat_id: str, item: dict[str, Any], rank: int) -> None:
        text = replies.caption(item, rank)
        photo = item.get("image_url") or ""
        if photo.startswith(("http://", "https://")):
            try:
                await client.with_retry(lambda: bot.send_photo(chat_id=chat_id, photo=photo, caption=text))
                return
            except BadRequest as exc:
                # Telegram fetches the picture itself: a URL it cannot reach (a private or local
                # host) is a 400. The product still goes out, as text.
                logger.warning("Telegram refused the picture %s (%s); sending the result as text", photo, exc)
        await self._send_text(bot, chat_id, text)

    async def _send_text(self, bot: Bot, chat_id: str, text: str) -> None:
        try:
            await client.with_retry(lambda: bot.send_message(chat_id=chat_id, text=text))
        except TelegramError as exc:
            logger.warning("Telegram did not take a message for chat %s: %s: %s", chat_id, type(exc).__name__, exc)
