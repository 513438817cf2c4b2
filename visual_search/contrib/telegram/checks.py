"""System checks of ``VISUAL_SEARCH_TELEGRAM`` (ids ``visual_search_telegram.E001``...)."""

from __future__ import annotations

import importlib.util
import re

from django.core import checks

from visual_search.contrib.messaging.checks import adapter_problems, problem_messages, setting_error

from .conf import settings

SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TOKEN_PATTERN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")

CHECK_IDS = {
    "visual_search_telegram.E001": "TOKEN is missing, or not a bot token ('123456:ABC...').",
    "visual_search_telegram.E002": "SECRET is missing, or not 1-256 characters of A-Z, a-z, 0-9, _ and -.",
    "visual_search_telegram.E003": "Another key has a value of the wrong type or out of range.",
    "visual_search_telegram.E004": "python-telegram-bot is not installed.",
    "visual_search_telegram.W001": "A key that is not a setting (the message names the closest one).",
}


def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """TOKEN and SECRET are required once the app is installed; every other key is validated."""
    messages = []
    token, secret = settings.TOKEN, settings.SECRET
    if not (isinstance(token, str) and TOKEN_PATTERN.match(token)):
        shown = "is missing" if not token else "is not a bot token"
        messages.append(setting_error(settings, "TOKEN", f"{shown}: the bot cannot answer.",
                                      "Create a bot with @BotFather and set its token, e.g. from an environment variable.",
                                      "visual_search_telegram.E001"))
    if not (isinstance(secret, str) and SECRET_PATTERN.match(secret)):
        shown = "is missing" if not secret else "is not 1-256 characters of A-Z, a-z, 0-9, _ and -"
        messages.append(setting_error(settings, "SECRET", f"{shown}: the webhook refuses every update without it.",
                                      "Set a long random string, e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\".",
                                      "visual_search_telegram.E002"))
    messages += _other_keys()
    if importlib.util.find_spec("telegram") is None:
        messages.append(checks.Error("python-telegram-bot is not installed.",
                                     hint='pip install "django-visual-search[telegram]"', id="visual_search_telegram.E004"))
    return messages


def _other_keys() -> list[checks.CheckMessage]:
    return problem_messages(settings, adapter_problems(settings), error_id="visual_search_telegram.E003",
                            warning_id="visual_search_telegram.W001", docs="docs/telegram.md")
