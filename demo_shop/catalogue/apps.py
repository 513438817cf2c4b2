import os
import sys
import threading
import time

from django.apps import AppConfig, apps


class CatalogueConfig(AppConfig):
    name = "demo_shop.catalogue"
    label = "catalogue"
    verbose_name = "Catalogue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The demo runs on runserver: load VGG16 and the index while the server starts, as a
        # production web worker does in gunicorn's post_worker_init (docs/deployment.md), so the
        # first "search by photo" does not wait for them. Only in the process that serves (with
        # the autoreloader, its child), never in other manage.py commands.
        serving = "runserver" in sys.argv and (os.environ.get("RUN_MAIN") == "true" or "--noreload" in sys.argv)
        if serving:
            threading.Thread(target=_warm_up, name="visual-search-warm-up", daemon=True).start()


def _warm_up():
    while not apps.ready:  # the thread starts inside ready(): wait until every app is loaded
        time.sleep(0.05)
    import visual_search

    visual_search.warm_up()
