"""The Oscar integration as one app: ``INSTALLED_APPS = [..., Oscar's apps, "visual_search",
"visual_search.contrib.oscar"]``.

It is an Oscar dashboard app (``OscarDashboardConfig``), so its page takes part in Oscar's
dashboard as Oscar's own do: ``permissions_map`` guards every view, and the dashboard menu shows
the entry only to those allowed. Mount it beside Oscar's URLs::

    path("dashboard/visual-search/", apps.get_app_config("visual_search_oscar").urls),
"""

from django.core import checks as django_checks
from django.urls import path
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _
from oscar.core.application import OscarDashboardConfig

from . import checks, registration

VIEWS = "visual_search.contrib.oscar.views"
SIGNALS = "visual_search.contrib.oscar.signals"


class VisualSearchOscarConfig(OscarDashboardConfig):
    """Registers Oscar's product images (unless the shop did), follows the products' saves that
    hide or show a variant, and serves the dashboard page."""

    default = True  # apps.py also holds the imported OscarDashboardConfig
    name = "visual_search.contrib.oscar"
    label = "visual_search_oscar"
    namespace = "visual_search_oscar"
    verbose_name = _("Visual search for Oscar")
    default_auto_field = "django.db.models.BigAutoField"

    # Any staff member sees the status; changing it takes the right to change products. Lists, as
    # Oscar reads them: a list means "all of these", a tuple of lists "any of these".
    default_permissions = ["is_staff"]  # noqa: RUF012 - Oscar's attribute, read-only
    permissions_map = {  # noqa: RUF012
        "visual-search-reindex": ["is_staff", "catalogue.change_product"],
        "visual-search-requeue": ["is_staff", "catalogue.change_product"],
    }

    def ready(self) -> None:
        registration.register_product_images()
        # A variant hidden or shown again: its images leave or rejoin search. Loaded by name, as the
        # views below: its handlers use models.
        import_string(f"{SIGNALS}.connect")()
        django_checks.register(checks.check_visibility, "visual_search")
        # Loaded by name: the views use models, which cannot be imported while apps load.
        self.status_view = import_string(f"{VIEWS}.StatusView")
        self.reindex_view = import_string(f"{VIEWS}.ReindexView")
        self.requeue_view = import_string(f"{VIEWS}.RequeueFailedView")

    def get_urls(self):
        urls = [
            path("", self.status_view.as_view(), name="visual-search-status"),
            path("reindex/", self.reindex_view.as_view(), name="visual-search-reindex"),
            path("requeue/", self.requeue_view.as_view(), name="visual-search-requeue"),
        ]
        return self.post_process_urls(urls)
