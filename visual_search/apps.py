from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _


class VisualSearchConfig(AppConfig):
    """Connects the signal processor for registered models and registers the system checks."""

    name = "visual_search"
    verbose_name = _("Visual search")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from . import checks  # noqa: F401 - registers the checks
        from .signals import setup_signal_processor
        from .workers import connect_worker_signals

        setup_signal_processor()
        connect_worker_signals()

        def reconnect(setting, **kwargs):
            if setting == "VISUAL_SEARCH":
                try:
                    setup_signal_processor()
                except ImproperlyConfigured:
                    pass  # reported by the system checks (visual_search.E001)

        setting_changed.connect(reconnect, weak=False, dispatch_uid="visual_search.reconnect")
