"""``settings.VISUAL_SEARCH_TELEGRAM``: the messaging keys every messenger has, and Telegram's own."""

from __future__ import annotations

from visual_search.contrib.messaging.conf import COMMON, MessengerSettings

SETTING = "VISUAL_SEARCH_TELEGRAM"

DEFAULTS = {
    **COMMON,
    "TOKEN": None,  # BotFather's token, "123456:ABC..."
    "SECRET": None,  # the webhook's secret token: 1-256 of A-Z a-z 0-9 _ -
    # The Bot API server: Telegram's, or a local telegram-bot-api server (and the tests' fake one).
    "API_URL": "https://api.telegram.org",
    # A 429's retry_after up to this many seconds is waited for, once; a longer one gives up the reply.
    "RETRY_AFTER_MAX": 5,
    "TIMEOUT": 10,  # seconds for each call to the Bot API (a photo upload gets twice that)
}

# Telegram's getFile serves files up to 20 MB to bots on its own servers.
GETFILE_LIMIT = 20 * 1024 * 1024

settings = MessengerSettings(SETTING, DEFAULTS)
