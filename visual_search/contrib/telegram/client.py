"""python-telegram-bot's ``Bot``, from sync Django code: on ``API_URL``, one 429 retry, closed after use.

``Bot`` is async; each :func:`call` runs one ``asyncio.run`` with its own HTTP connection pool
(a pool belongs to one event loop), in the worker or thread that answers a message.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured
from telegram import Bot
from telegram.error import RetryAfter
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from .conf import settings
from .logs import hide_bot_token

logger = logging.getLogger("visual_search")

T = TypeVar("T")


def bot_kwargs() -> dict:
    """The ``Bot`` arguments from settings: the token, and the API and file URLs on ``API_URL``."""
    token = settings.TOKEN
    if not token:
        raise ImproperlyConfigured("VISUAL_SEARCH_TELEGRAM['TOKEN'] is not set: add the token @BotFather gave your bot.")
    api = str(settings.API_URL).rstrip("/")
    return {"token": token, "base_url": f"{api}/bot", "base_file_url": f"{api}/file/bot"}


def call(work: Callable[[Bot], Awaitable[T]]) -> T:
    """Run ``await work(bot)`` and return its value; raises what python-telegram-bot raises."""
    hide_bot_token()  # also where the app is not installed (a worker's own settings): its ready() adds it
    return asyncio.run(_call(work))


async def _call(work: Callable[[Bot], Awaitable[T]]) -> T:
    timeout = float(settings.TIMEOUT)
    request = HTTPXRequest(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout,
                           media_write_timeout=2 * timeout)
    await request.initialize()
    try:
        # Our own request object, shut down here: Bot.initialize() would also call getMe each time.
        return await work(Bot(**bot_kwargs(), request=request, get_updates_request=request))
    finally:
        await request.shutdown()


async def with_retry(send: Callable[[], Awaitable[T]]) -> T:
    """``await send()``; after a 429 whose ``retry_after`` is at most ``RETRY_AFTER_MAX``, wait that
    long and send once more. A longer wait re-raises at once: a worker should not sleep for minutes,
    and sending before Telegram's time only earns another 429."""
    try:
        return await send()
    except RetryAfter as exc:
        wait = retry_after_seconds(exc)
        if wait > float(settings.RETRY_AFTER_MAX):
            raise
        logger.info("Telegram asked to wait %ss (429); retrying once", wait)
        await asyncio.sleep(wait)
        return await send()


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        # python-telegram-bot 22.2+ warns that retry_after will become a timedelta; both are handled.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
