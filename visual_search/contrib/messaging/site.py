"""A stand-in for the customer's request, for work done after the webhook answered.

Result cards need absolute links and the shop's ``VISIBILITY`` rule needs a request; in a worker
there is none. This one is an anonymous GET of the shop's site URL (``SITE_URL``, else the host and
path prefix the service's webhook call came to), which is what a customer clicking the link will be.

A shop mounted under a path prefix (``FORCE_SCRIPT_NAME``, a proxy's ``SCRIPT_NAME``, uvicorn's
``--root-path``) has its pages below it; Django knows the prefix only in the thread of a request,
so :func:`links_below` gives it to ``reverse()`` (``get_absolute_url()``) while a thread or a Celery
worker answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.urls import get_script_prefix, set_script_prefix


class SiteRequest(HttpRequest):
    """An anonymous ``GET`` of ``site_url``'s home page; ``build_absolute_uri`` makes links on that site."""

    def __init__(self, site_url: str):
        super().__init__()
        parts = urlsplit(site_url)
        self.method = "GET"
        self.path, self.path_info = prefix_of(site_url), "/"
        self.META["SCRIPT_NAME"] = self.path.rstrip("/")
        self._site_scheme = parts.scheme or "https"
        self._site_host = parts.netloc
        self.META.update({"HTTP_HOST": parts.netloc, "SERVER_NAME": parts.hostname or "",
                          "SERVER_PORT": str(parts.port or (443 if self._site_scheme == "https" else 80))})
        self.user = AnonymousUser()

    def _get_scheme(self) -> str:
        return self._site_scheme

    def get_host(self) -> str:
        # Trusted: from the project's settings, or from a request that passed ALLOWED_HOSTS already.
        return self._site_host


def webhook_site_url(request: HttpRequest) -> str:
    """The home page of the site a webhook call came to: its scheme, host and path prefix."""
    return request.build_absolute_uri(get_script_prefix())


def prefix_of(site_url: str | None) -> str:
    """The path prefix the shop's pages are below, ``"/shop/"``: ``site_url``'s path, else
    ``FORCE_SCRIPT_NAME``'s (a ``SITE_URL`` written without it), else ``"/"``."""
    path = urlsplit(site_url or "").path.rstrip("/") or (settings.FORCE_SCRIPT_NAME or "").rstrip("/")
    return path + "/"


@contextlib.contextmanager
def links_below(site_url: str | None) -> Iterator[None]:
    """``reverse()`` below ``site_url``'s path prefix meanwhile. In a thread or a worker Django's prefix
    is "/" (it sets the request's in the request's thread only): a reply's links to the pages of a shop
    under /shop were /product/..., which answer 404."""
    previous = get_script_prefix()
    set_script_prefix(prefix_of(site_url))
    try:
        yield
    finally:
        set_script_prefix(previous)


def site_request(site_url: str | None) -> HttpRequest | None:
    return SiteRequest(site_url) if site_url else None


def anonymous_request() -> HttpRequest:
    """An anonymous ``GET /`` of no known site: whom the ``VISIBILITY`` rule is asked about where a
    message is answered without a site URL (links then stay relative). Without it the search had no
    request, and searched the whole catalogue, hidden products too."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = "/"
    request.user = AnonymousUser()
    return request
