"""Celery for the demo shop, used only when ``CELERY_BROKER_URL`` is set in the environment.

Without it, indexing runs in the web process (VISUAL_SEARCH["ASYNC"] = None follows the broker).
With it: ``CELERY_BROKER_URL=redis://localhost:6379/0 celery -A demo_shop worker -l info``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")

app = Celery("demo_shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
