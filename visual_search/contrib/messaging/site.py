"""A stand-in for the customer's request, for work done after the webhook answered.

Result cards need absolute links and the shop's ``VISIBILITY`` rule needs a request; in a worker
there is none. This one is an anonymous GET of the shop's site URL (``SITE_URL``, else the host the
service's webhook call came to), which is what a customer clicking the link will be.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest


class SiteRequest(HttpRequest):
    """An anonymous ``GET /`` on ``site_url``; ``build_absolute_uri`` makes links on that site."""

    def __init__(self, site_url: str):
        super().__init__()
        parts = urlsplit(site_url)
        self.method = "GET"
        self.path = self.path_info = "/"
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
