"""What the package's views do to every request: HEAD answered as GET is; the photo's file name
hidden from Django's error reports.

HEAD answered as GET is, with the headers and no body: a load balancer's health check (``curl -I``).

Django sends a HEAD response's body to the WSGI server, which is to drop it; gunicorn (27) logs a
warning each time ("WSGI app sent body bytes on a no-body response (method=HEAD ...)"): a line per
health check on every page of the package. Its views drop the body themselves, and keep the
``Content-Length`` a GET would have.
"""

from __future__ import annotations

import re
from functools import wraps

from django.http import HttpRequest, HttpResponseBase


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


def photo_names_hidden(dispatch):
    """``dispatch`` (a view's, through ``method_decorator``), after which the request's uploaded files
    are named ``photo`` and their extension.

    A phone names a photo by when it was taken (``IMG_20261205_134501.jpg``), a computer by what it
    shows or whose it is (``anna-at-home.jpg``), and Django's report of a 500, or of a 503 (both
    logged on ``django.request``: ``AdminEmailHandler`` mails them), lists ``request.FILES`` and the
    frames' variables by name. Those reports are made after the view has returned or raised, so
    the names are changed then; the shop's own views are reported as before (docs/privacy.md).
    """

    @wraps(dispatch)
    def wrapper(request: HttpRequest, *args, **kwargs):
        failed = True
        try:
            response = dispatch(request, *args, **kwargs)
            failed = response.status_code >= 500
            return response
        finally:
            rename_uploads(request, read=failed)

    return wrapper


def rename_uploads(request: HttpRequest, read: bool) -> None:
    """``request``'s uploaded files named ``photo.<extension>``. ``read``: its body read first where
    the view had not (it failed before), as the error report would read it to list them."""
    if not read and "_files" not in vars(request):
        return
    try:
        files = request.FILES
    except Exception:  # a body that cannot be read: the report lists no file either
        return
    for uploads in files.lists():
        for upload in uploads[1]:
            upload.name = neutral_name(upload.name or "")


def neutral_name(name: str) -> str:
    """``photo`` with the extension of ``name`` (lower case; dropped where it is not one)."""
    extension = re.search(r"\.[A-Za-z0-9]{1,5}$", name)
    return "photo" + (extension.group(0).lower() if extension else "")
