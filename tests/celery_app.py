"""The Celery app the integration tests start a real worker with (``celery -A tests.celery_app worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("visual_search_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["visual_search"])
