"""The Telegram bot as one app: ``INSTALLED_APPS = [..., "visual_search", "visual_search.contrib.telegram"]``."""

from django.apps import AppConfig
from django.core import checks as django_checks
from django.utils.translation import gettext_lazy as _

from . import checks
from .logs import hide_bot_token


class VisualSearchTelegramConfig(AppConfig):
    """Checks ``VISUAL_SEARCH_TELEGRAM``; serves the webhook (``urls``) and ``manage.py visual_search_telegram``."""

    name = "visual_search.contrib.telegram"
    label = "visual_search_telegram"
    verbose_name = _("Visual search in Telegram")

    def ready(self) -> None:
        django_checks.register(checks.check_settings, "visual_search")
        hide_bot_token()
