"""ASGI entry point of the demo shop: ``uvicorn demo_shop.asgi:application`` (docs/deployment.md, "ASGI").

As ``startproject`` writes it, plus two things ``runserver`` did for the demo: its static files
(the widget's script and style) served while ``DEBUG`` is on (production: the proxy, or WhiteNoise),
and VGG16 and the index loaded while the server starts, in a thread of its own, as
``deploy/gunicorn.conf.py`` does in ``post_worker_init``; and a photo too large refused before
its body is read (``visual_search.asgi.limit_uploads``), as gunicorn refuses it. Each uvicorn worker process imports this
module, and so loads the model once.
"""

import os
import threading

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")

application = get_asgi_application()  # django.setup(): the settings and apps are ready below

if settings.DEBUG:
    application = ASGIStaticFilesHandler(application)

import visual_search  # noqa: E402 - after django.setup()
from visual_search.asgi import limit_uploads  # noqa: E402

# A photo over MAX_UPLOAD_BYTES refused from its Content-Length, before its body is read.
application = limit_uploads(application)

threading.Thread(target=visual_search.warm_up, name="visual-search-warm-up", daemon=True).start()
