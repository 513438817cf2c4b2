# gunicorn's settings for the web processes. gunicorn reads ./gunicorn.conf.py from the folder it
# starts in: copy this file beside manage.py (or pass -c deploy/gunicorn.conf.py). Command-line
# options (the Procfile's, the compose file's) override these.
import os
import threading

# Customers reach gunicorn through the proxy in front (nginx, a load balancer): bound to this
# machine only, a client cannot reach it directly and write its own X-Forwarded-For past the
# search throttle (docs/deployment.md). BIND="0.0.0.0:8000" in a container behind a proxy.
bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = 4
threads = 2
# The master kills a worker that is silent for longer.
timeout = 60


def post_worker_init(worker):
    """Load VGG16 and the index before the worker's first photo search (docs/deployment.md), in a
    thread of its own: the worker serves the shop's other pages at once, and a search that comes
    first waits for the load instead of doing it again. A reload (HUP) starts every worker at once:
    warming up in the worker's own thread kept the whole shop from answering for as long (20 s on
    2 cores with 4 workers). It never raises: a part that cannot load is logged and loaded by the
    first search instead."""
    import visual_search

    threading.Thread(target=visual_search.warm_up, name="visual-search-warm-up", daemon=True).start()
