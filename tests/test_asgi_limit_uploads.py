"""``visual_search.asgi.limit_uploads``: under ASGI a photo over MAX_UPLOAD_BYTES refused before its
body is read (Django's ASGI handler reads the whole body before any view runs).

Each request goes through Django's own ASGI handler with a ``receive`` that counts what the
application asked of the client: a refused photo must have asked for nothing of its body.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import get_script_prefix, set_script_prefix

from tests.conftest import catalogue_image
from tests.test_asgi import multipart
from visual_search.asgi import limit_uploads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]

API = "/api/visual-search/search/"
PAGE = "/search-by-photo/"
HUGE = str(500 * 1024 * 1024)  # declared: 500 MB; sent: a few bytes


class Client:
    """The client's side of one ASGI request: its body in ``chunks`` (forever, with ``endless``),
    and how many of them the application asked for."""

    def __init__(self, chunks: list[bytes], endless: bool = False):
        self.chunks, self.endless, self.asked = list(chunks), endless, 0
        self.done = asyncio.Event()

    async def receive(self):
        if self.endless or self.asked < len(self.chunks):
            chunk = self.chunks[min(self.asked, len(self.chunks) - 1)]
            self.asked += 1
            return {"type": "http.request", "body": chunk, "more_body": self.endless or self.asked < len(self.chunks)}
        await self.done.wait()
        return {"type": "http.disconnect"}


def call(application, path: str, client: Client, headers: dict[str, str], root_path: str = ""):
    sent: list[dict] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path, "query_string": b"",
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), *((k.encode(), v.encode()) for k, v in headers.items())],
    }

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            client.done.set()

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    prefix = get_script_prefix()
    try:
        async_to_sync(application)(scope, client.receive, send)
    finally:
        set_script_prefix(prefix)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], {k.decode().lower(): v.decode() for k, v in starts[0]["headers"]}, body


@pytest.fixture
def application():
    return limit_uploads(get_asgi_application())


def test_a_declared_length_over_the_limit_is_refused_413_and_the_body_never_read(application):
    client = Client([b"x" * 100])
    status, headers, body = call(application, API, client, {"content-length": HUGE, "content-type": "multipart/form-data; boundary=b"})
    assert status == 413 and json.loads(body)["code"] == "file_too_large"
    assert client.asked == 0  # not one message of the body was asked for


def test_without_the_wrapper_django_reads_the_body_first():
    """What the wrapper is for: the same request asks the client for its body before the view runs."""
    client = Client([b"x" * 100])
    status, _headers, _body = call(get_asgi_application(), API, client, {"content-length": HUGE, "content-type": "multipart/form-data; boundary=b"})
    assert status == 413 and client.asked == 1


def test_the_search_page_below_a_root_path_is_refused_in_its_own_words_unread(application):
    client = Client([b"x" * 100])
    status, headers, body = call(application, PAGE, client, {"content-length": HUGE, "content-type": "multipart/form-data; boundary=b"},
                                 root_path="/shop")
    assert status == 413 and headers["content-type"].startswith("text/html")
    assert b"larger than" in body and client.asked == 0


def test_under_i18n_patterns_a_language_prefixed_search_page_is_refused_unread(settings):
    settings.ROOT_URLCONF = "tests.urls_i18n"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE[:1], "django.middleware.locale.LocaleMiddleware", *settings.MIDDLEWARE[1:]]
    settings.LANGUAGES = [("de", "Deutsch"), ("fr", "Français"), ("en", "English")]
    settings.LANGUAGE_CODE = "en"
    application = limit_uploads(get_asgi_application())  # its middleware, LocaleMiddleware's too
    client = Client([b"x" * 100])
    status, _headers, _body = call(application, "/fr" + PAGE, client, {"content-length": HUGE, "content-type": "multipart/form-data; boundary=b"})
    assert status == 413 and client.asked == 0
    client = Client([b"x" * 100])  # the default language's, without a prefix
    assert call(application, PAGE, client, {"content-length": HUGE})[0] == 413 and client.asked == 0


def test_a_chunked_upload_without_length_is_refused_411_unread(application):
    client = Client([b"x" * 1024], endless=True)
    status, _headers, body = call(application, API, client, {"transfer-encoding": "chunked", "content-type": "multipart/form-data; boundary=b"})
    assert status == 411 and json.loads(body)["code"] == "length_required" and client.asked == 0


def test_a_body_without_any_length_stops_being_read_once_over_the_limit(application, settings):
    """HTTP/2 may send a body with no Content-Length: it is counted as it comes, and no more is read
    past MAX_UPLOAD_BYTES (plus the form's slack); the answer is the API's 413."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_UPLOAD_BYTES": 1024 * 1024}
    megabyte = b"x" * (1024 * 1024)
    client = Client([megabyte], endless=True)
    status, headers, body = call(application, API, client, {"content-type": "multipart/form-data; boundary=b"})
    assert status == 413 and json.loads(body) == {"detail": "The photo is larger than 1 MB; send a smaller one.", "code": "file_too_large"}
    assert client.asked == 2  # 1 MB, then one more: over 1 MB and 64 KB


def test_a_photo_within_the_limit_is_searched_through_the_wrapper(application, make_product):
    banana = make_product("Banana", catalogue_image("Banana"))
    data, content_type = multipart(catalogue_image("Banana").read_bytes())
    client = Client([data[:1000], data[1000:]])
    status, _headers, body = call(application, API, client, {"content-length": str(len(data)), "content-type": content_type})
    assert status == 200 and json.loads(body)["results"][0]["id"] == banana.pk


def test_other_urls_are_not_touched(application):
    """A shop's own upload elsewhere (the admin's) is read as Django reads it, whatever its length."""
    client = Client([b"x" * 100])
    call(application, "/admin/login/", client, {"content-length": HUGE, "content-type": "application/x-www-form-urlencoded"})
    assert client.asked == 1


def test_lifespan_and_other_scopes_go_through():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    async_to_sync(limit_uploads(inner))({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]

