"""An ASGI wrapper that refuses a photo too large for search by photo before its body is read.

Django's ASGI handler reads a request's whole body (to a temporary file) before any view runs, so a
photo over ``MAX_UPLOAD_BYTES`` was refused with 413 only once it had all arrived: a client could
make the server take 100 MB before hearing no (gunicorn's sync worker hands the view the socket,
and the view refuses from ``Content-Length`` unread). Opt in in the project's ``asgi.py``::

    application = get_asgi_application()

    from visual_search.asgi import limit_uploads  # after get_asgi_application(): the apps are loaded

    application = limit_uploads(application)

Only ``POST`` requests to the package's search views (the JSON API's ``search/`` and the search page,
wherever the shop mounts them, below ``root_path`` or ``FORCE_SCRIPT_NAME``, under ``i18n_patterns``)
are looked at; every other request goes through untouched. For those:

- a ``Content-Length`` over the limit (or not a number, or a chunked body without one, which the
  views refuse too) reaches Django with an empty body, and the view answers from the header as it
  does under gunicorn (413 ``file_too_large``, 411, 400), with the shop's middleware (CORS, the
  page's language): not a byte of the body is read;
- a body without ``Content-Length`` (HTTP/2 may send one so) is counted as it arrives, and once
  it is over the limit no more is read: Django is told the client left, and the wrapper answers
  413 ``file_too_large`` in the API's error JSON itself.

The search views are found by resolving the path with ``ROOT_URLCONF``; a urlconf that a middleware
chooses per request (``request.urlconf``: django-tenants' ``PUBLIC_SCHEMA_URLCONF``) is not read:
a search URL only it has is not pre-checked, and its paths are taken for ``ROOT_URLCONF``'s
(docs/deployment.md, multi-tenant shops).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings as django_settings
from django.core.handlers.asgi import get_script_prefix
from django.urls import Resolver404, resolve
from django.utils import translation

from .api.views import SearchView
from .photo_search import MULTIPART_SLACK, PhotoSearchError, check_content_length, max_upload_bytes, too_large
from .views import SearchByPhotoView

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SEARCH_VIEWS = (SearchView, SearchByPhotoView)


def limit_uploads(application: ASGIApp) -> ASGIApp:
    """``application`` (the project's ASGI application), refusing a photo search over
    ``MAX_UPLOAD_BYTES`` before its body is read (see the module's docstring)."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method", "").upper() != "POST" or not is_photo_search(scope):
            await application(scope, receive, send)
            return
        try:
            check_content_length(header_meta(scope))
        except PhotoSearchError:
            await application(scope, unread(), send)  # the view refuses it from the header
            return
        await counted(application, scope, receive, send)

    limited.__wrapped__ = application  # type: ignore[attr-defined]
    return limited


def is_photo_search(scope: Scope) -> bool:
    """Whether ``scope``'s path is one of the package's search views, as Django will resolve it."""
    prefix = get_script_prefix(scope)
    path_info = scope.get("path", "").removeprefix(prefix) if prefix else scope.get("path", "")
    # Under i18n_patterns a path resolves in its own language only (/fr/... while French is active).
    language = translation.get_language_from_path(path_info) or django_settings.LANGUAGE_CODE
    try:
        with translation.override(language):
            match = resolve(path_info or "/")
    except Resolver404:
        return False
    view_class = getattr(match.func, "view_class", None)
    return isinstance(view_class, type) and issubclass(view_class, SEARCH_VIEWS)


def header_meta(scope: Scope) -> dict[str, str]:
    """The body's headers as Django's ``request.META`` will hold them (repeated ones joined by ",")."""
    meta: dict[str, list[str]] = {}
    names = {b"content-length": "CONTENT_LENGTH", b"transfer-encoding": "HTTP_TRANSFER_ENCODING"}
    for name, value in scope.get("headers", []):
        if name.lower() in names:
            meta.setdefault(names[name.lower()], []).append(value.decode("latin1"))
    return {name: ",".join(values) for name, values in meta.items()}


def unread() -> Receive:
    """A ``receive`` that gives Django an empty body at once and never reads the client's."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Django then listens for the client leaving until its response is sent, and cancels this.
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # pragma: no cover - never reached

    return receive


async def counted(application: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``application`` reading the body through a count: once it is over the limit, no more is read,
    Django is told the client left (it answers nothing), and the 413 is answered here."""
    limit = max_upload_bytes() + MULTIPART_SLACK
    received, over = 0, False

    async def receive_counted() -> Message:
        nonlocal received, over
        if over:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                over = True
                return {"type": "http.disconnect"}
        return message

    await application(scope, receive_counted, send)
    if over:
        body = json.dumps(too_large().as_dict()).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})
