"""The WhatsApp bot as one app: ``INSTALLED_APPS = [..., "visual_search", "visual_search.contrib.whatsapp"]``."""

from django.apps import AppConfig
from django.core import checks as django_checks
from django.utils.translation import gettext_lazy as _

from . import checks


class VisualSearchWhatsAppConfig(AppConfig):
    """Checks ``VISUAL_SEARCH_WHATSAPP``; serves the webhook (``urls``)."""

    name = "visual_search.contrib.whatsapp"
    label = "visual_search_whatsapp"
    verbose_name = _("Visual search in WhatsApp")

    def ready(self) -> None:
        django_checks.register(checks.check_settings, "visual_search")
