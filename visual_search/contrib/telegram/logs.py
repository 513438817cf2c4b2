"""The bot's token, and its customers, kept out of logs.

The Bot API puts the token in every URL (``https://api.telegram.org/bot<token>/getFile``), and
httpx, which python-telegram-bot sends its requests with, logs each request's URL at INFO on the
``httpx`` logger. A project whose root logger is at INFO wrote the token into its logs (and any
error tracker fed by them): whoever reads those can act as the bot, and read its customers' photos.
At DEBUG, python-telegram-bot's Bot logs each call's parameters and what it returned: the chat id, and
in a returned message the customer's name, username and words.
"""

from __future__ import annotations

import logging
import re

# "/bot123456:AAH..." and "/file/bot123456%3AAAH...": the token is the bot's id, a colon (encoded
# in a file's URL), and a secret.
TOKEN_IN_URL = re.compile(r"(/bot)\d+(?::|%3[Aa])[\w-]+")
HIDDEN = r"\1<TOKEN>"
# A filter acts on its own logger's records only, not its children's: each logger that writes a URL.
# python-telegram-bot's Bot logs its URLs at DEBUG ("Set Bot API URL: ...").
LOGGERS = ("httpx", "telegram.Bot")


class HideBotToken(logging.Filter):
    """Rewrites a record whose message holds a Bot API URL with the token replaced by ``<TOKEN>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if TOKEN_IN_URL.search(message):
            record.msg, record.args = TOKEN_IN_URL.sub(HIDDEN, message), None
        return True


# python-telegram-bot's two lines per call (telegram/_bot.py, 20 to 22): the endpoint, then what was
# sent or returned. The endpoint stays.
CALL_LINES = (
    "Calling Bot API endpoint `%s` with parameters `%s`",
    "Call to Bot API endpoint `%s` finished with return value `%s`",
)
NOT_LOGGED = "<not logged: it names the customer>"


class HideCustomer(logging.Filter):
    """Rewrites python-telegram-bot's record of a call with its parameters and its return value left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in CALL_LINES and isinstance(record.args, tuple) and len(record.args) == 2:
            record.args = (record.args[0], NOT_LOGGED)
        return True


def hide_bot_token() -> None:
    """Adds :class:`HideBotToken` to the loggers of the HTTP libraries, and :class:`HideCustomer` to
    python-telegram-bot's Bot's, once."""
    for name, kind in (("telegram.Bot", HideCustomer), *((name, HideBotToken) for name in LOGGERS)):
        logger = logging.getLogger(name)
        if not any(isinstance(each, kind) for each in logger.filters):
            logger.addFilter(kind())
