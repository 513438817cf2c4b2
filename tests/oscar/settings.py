"""Settings for the django-oscar tests (``-m oscar``): a minimal Oscar 4.2 shop as Oscar's sandbox sets
one up (SQLite, Haystack's simple backend), with visual_search and visual_search.contrib.oscar.

Run: ``DJANGO_SETTINGS_MODULE=tests.oscar.settings python -m pytest tests/oscar -m oscar``.
"""

import os
import tempfile

from oscar.defaults import *  # Oscar's OSCAR_* settings, as its sandbox does

from tests.plumbing import PLUMBING_NETWORK, console_logging

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
SITE_ID = 1
ROOT_URLCONF = "tests.oscar.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGIN_REDIRECT_URL = "/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.flatpages",
    "oscar.config.Shop",
    "oscar.apps.analytics.apps.AnalyticsConfig",
    "oscar.apps.checkout.apps.CheckoutConfig",
    "oscar.apps.address.apps.AddressConfig",
    "oscar.apps.shipping.apps.ShippingConfig",
    "oscar.apps.catalogue.apps.CatalogueConfig",
    "oscar.apps.catalogue.reviews.apps.CatalogueReviewsConfig",
    "oscar.apps.communication.apps.CommunicationConfig",
    "oscar.apps.partner.apps.PartnerConfig",
    "oscar.apps.basket.apps.BasketConfig",
    "oscar.apps.payment.apps.PaymentConfig",
    "oscar.apps.offer.apps.OfferConfig",
    "oscar.apps.order.apps.OrderConfig",
    "oscar.apps.customer.apps.CustomerConfig",
    "oscar.apps.search.apps.SearchConfig",
    "oscar.apps.voucher.apps.VoucherConfig",
    "oscar.apps.wishlists.apps.WishlistsConfig",
    "oscar.apps.dashboard.apps.DashboardConfig",
    "oscar.apps.dashboard.reports.apps.ReportsDashboardConfig",
    "oscar.apps.dashboard.users.apps.UsersDashboardConfig",
    "oscar.apps.dashboard.orders.apps.OrdersDashboardConfig",
    "oscar.apps.dashboard.catalogue.apps.CatalogueDashboardConfig",
    "oscar.apps.dashboard.offers.apps.OffersDashboardConfig",
    "oscar.apps.dashboard.partners.apps.PartnersDashboardConfig",
    "oscar.apps.dashboard.pages.apps.PagesDashboardConfig",
    "oscar.apps.dashboard.ranges.apps.RangesDashboardConfig",
    "oscar.apps.dashboard.reviews.apps.ReviewsDashboardConfig",
    "oscar.apps.dashboard.vouchers.apps.VouchersDashboardConfig",
    "oscar.apps.dashboard.communications.apps.CommunicationsDashboardConfig",
    "oscar.apps.dashboard.shipping.apps.ShippingDashboardConfig",
    "widget_tweaks",
    "haystack",
    "treebeard",
    "django_tables2",
    "rest_framework",
    "drf_spectacular",
    "visual_search",
    "visual_search.contrib.oscar",  # after Oscar's apps and visual_search
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",  # sets request.strategy (prices, stock)
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
]
AUTHENTICATION_BACKENDS = ["oscar.apps.customer.auth_backends.EmailBackend", "django.contrib.auth.backends.ModelBackend"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The shop's own overrides: Oscar's navbar with the camera button, its product page with
        # similar products (docs/oscar.md).
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ]
        },
    }
]
_TEST_DB = os.environ.get("VISUAL_SEARCH_OSCAR_TEST_DB") or os.path.join(
    tempfile.gettempdir(), f"visual_search_oscar_test_{os.getpid()}.sqlite3"
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _TEST_DB,
        "TEST": {"NAME": _TEST_DB},
        "OPTIONS": {"timeout": 30},
    }
}
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}
MEDIA_ROOT = os.environ.get("VISUAL_SEARCH_OSCAR_TEST_MEDIA", os.path.join(tempfile.gettempdir(), "visual_search_oscar_media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
OSCAR_DEFAULT_CURRENCY = "EUR"
# Oscar's default thumbnailer needs sorl-thumbnail, which a minimal shop may not install; the
# adapter then falls back to visual_search's own thumbnails (tested).

# The dashboard menu with visual search's page under Catalogue (docs/oscar.md).
from visual_search.contrib.oscar.navigation import with_dashboard_entry

OSCAR_DASHBOARD_NAVIGATION = with_dashboard_entry(OSCAR_DASHBOARD_NAVIGATION)

VISUAL_SEARCH = {
    # No MODELS: the contrib registers catalogue.ProductImage.original itself.
    "VISIBILITY": "visual_search.contrib.oscar.visibility.browsable",
    "RESULT_ADAPTER": "visual_search.contrib.oscar.results.OscarResultAdapter",
    **PLUMBING_NETWORK,  # tests/plumbing.py, as tests/settings.py
    "ASYNC": False,
    "SEARCH_THROTTLE_RATE": None,
}
CELERY_BROKER_URL = None
LOGGING = console_logging("INFO")
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
