# gunicorn's settings for the web processes. gunicorn reads ./gunicorn.conf.py from the folder it
# starts in: copy this file beside manage.py (or pass -c deploy/gunicorn.conf.py). Command-line
# options (the Procfile's) override these.
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = 4
threads = 2
# Above the warm-up's time (a few seconds; the first start of RUNTIME "openvino-int8" on a new
# machine also calibrates it): the master kills a worker that is silent for longer.
timeout = 60


def post_worker_init(worker):
    """Load VGG16 and the index before the worker takes requests, so no customer's first photo
    search waits for them (docs/deployment.md). It never raises: a part that cannot load is logged
    and loaded by the first search instead."""
    import visual_search

    visual_search.warm_up()
