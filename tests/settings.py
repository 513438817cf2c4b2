"""Settings for the test suite: SQLite, tasks in-process, a small seeded random VGG16.

``VISUAL_SEARCH_TEST_MYSQL=mysql://user:password@host:port/name`` runs it on MySQL or MariaDB instead.

Integration tests (``-m integration``) switch to a real Redis broker and Celery worker.
"""

import os
import tempfile

import django

from tests import mysql
from tests.plumbing import PLUMBING_NETWORK, console_logging

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "visual_search",
    "tests.testapp",
]
MIDDLEWARE = [
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
# The test database is a file, so that the Celery worker processes started by the integration
# tests (which get its path in VISUAL_SEARCH_TEST_DB) open the very database the tests write.
_TEST_DB = os.environ.get("VISUAL_SEARCH_TEST_DB") or os.path.join(
    tempfile.gettempdir(), f"visual_search_test_{os.getpid()}.sqlite3"
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _TEST_DB,
        "TEST": {"NAME": _TEST_DB},
        # IMMEDIATE: a transaction takes the write lock when it begins, so one that reads then writes
        # waits for a worker's write (timeout) instead of failing at once with "database is locked".
        # Django 5.1+; on 4.2 the timeout alone.
        "OPTIONS": {"timeout": 30, **({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {})},
    }
}
if os.environ.get("VISUAL_SEARCH_TEST_MYSQL"):
    DATABASES = {"default": mysql.database_settings(os.environ["VISUAL_SEARCH_TEST_MYSQL"])}
MEDIA_ROOT = os.environ.get("VISUAL_SEARCH_TEST_MEDIA", os.path.join(tempfile.gettempdir(), "visual_search_test_media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"

VISUAL_SEARCH = {
    "MODELS": [
        {"model": "testapp.Product", "image_field": "image"},
        {"model": "testapp.ProductImage", "image_field": "image", "result": "product"},
    ],
    **PLUMBING_NETWORK,  # tests/plumbing.py
    "ASYNC": bool(os.environ.get("CELERY_BROKER_URL")),
    "SEARCH_THROTTLE_RATE": os.environ.get("VISUAL_SEARCH_TEST_THROTTLE", "30/min"),
}
# Integration tests whose workers must share a cache (the start-up sweep's lock) name a Redis for it.
if os.environ.get("VISUAL_SEARCH_TEST_CACHE"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["VISUAL_SEARCH_TEST_CACHE"]}}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Integration tests of Celery's hard time limit set one for their workers.
if os.environ.get("VISUAL_SEARCH_TEST_TIME_LIMIT"):
    CELERY_TASK_TIME_LIMIT = float(os.environ["VISUAL_SEARCH_TEST_TIME_LIMIT"])
LOGGING = console_logging("INFO")
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
