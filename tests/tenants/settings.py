"""Settings for the django-tenants tests (``-m tenants``): a shop platform with one PostgreSQL schema
per shop (django-tenants), visual_search in each shop's schema (docs/deployment.md).

PostgreSQL 16 comes from the ``pgserver`` wheel, started in a temporary folder when these settings
load and stopped when the process ends; ``VISUAL_SEARCH_TENANTS_PG`` names a running one instead.

Run: ``DJANGO_SETTINGS_MODULE=tests.tenants.settings python -m pytest tests/tenants -m tenants``.
"""

import os
import tempfile

from tests.plumbing import PLUMBING_NETWORK, console_logging
from tests.postgres import database_settings

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.tenants.urls"
PUBLIC_SCHEMA_URLCONF = "tests.tenants.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SHARED_APPS = [
    "django_tenants",
    "tests.tenants.customers",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
]
# Each shop's own: its catalogue, and visual search's vectors, versions and whitening beside it.
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "visual_search",
    "tests.tenants.shop",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "customers.Shop"
TENANT_DOMAIN_MODEL = "customers.Domain"
MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("VISUAL_SEARCH_TENANTS_PG"):
    _URI = os.environ["VISUAL_SEARCH_TENANTS_PG"]
else:
    import pgserver

    _URI = pgserver.get_server(tempfile.mkdtemp(prefix="visual_search_tenants_pg_"), cleanup_mode="delete").get_uri()
DATABASES = {"default": {**database_settings(_URI), "ENGINE": "django_tenants.postgresql_backend"}}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# django-tenants' documented cache keys: each shop's under its schema's name (docs/deployment.md).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}
MEDIA_ROOT = os.path.join(tempfile.gettempdir(), "visual_search_tenants_media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"

VISUAL_SEARCH = {
    "MODELS": [{"model": "shop.Product", "image_field": "image"}],
    **PLUMBING_NETWORK,  # tests/plumbing.py, as tests/settings.py
    "ASYNC": False,
    "SEARCH_THROTTLE_RATE": None,
}
CELERY_BROKER_URL = None
LOGGING = console_logging("WARNING")
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
