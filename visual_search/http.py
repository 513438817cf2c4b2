"""HEAD answered as GET is, with the headers and no body: a load balancer's health check (``curl -I``).

Django sends a HEAD response's body to the WSGI server, which is to drop it; gunicorn (27) logs a
warning each time ("WSGI app sent body bytes on a no-body response (method=HEAD ...)"): a line per
health check on every page of the package. Its views drop the body themselves, and keep the
``Content-Length`` a GET would have.
"""

from __future__ import annotations

from django.http import HttpResponseBase


class HeadWithoutBody:
    """A view mixin (first among the bases): a HEAD request's response without its body."""

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        if request.method == "HEAD":
            if getattr(response, "is_rendered", True):
                drop_body(response)
            else:  # a template (DRF's Response too): rendered after the view returns
                response.add_post_render_callback(drop_body)
        return response


def drop_body(response: HttpResponseBase) -> None:
    """``response`` without its body, its ``Content-Length`` that of the body (where it is known)."""
    if response.streaming:  # a file: its length is a header already
        response.streaming_content = []
        return
    if not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    response.content = b""
