"""``visual_search.asgi.limit_uploads`` on a platform: it resolves paths with ``ROOT_URLCONF`` (the
shops' urlconf), whichever domain, and so refuses a too large photo sent to a shop unread."""

from __future__ import annotations

import asyncio

import pytest
from django.core.asgi import get_asgi_application

from tests.test_asgi_limit_uploads import API, HUGE, Client
from visual_search.asgi import limit_uploads

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]


def post(host: str, length: str, body: bytes) -> tuple[int, int]:
    """The status of a POST of ``body`` to the search API on ``host``, and how many chunks were read."""
    client, sent = Client([body]), []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": API, "raw_path": API.encode(), "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
        "server": (host, 80), "headers": [(b"host", host.encode()), (b"content-length", length.encode()),
                                          (b"content-type", b"multipart/form-data; boundary=x")],
    }

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            client.done.set()

    asyncio.run(asyncio.wait_for(limit_uploads(get_asgi_application())(scope, client.receive, send), 20))
    return sent[0]["status"], client.asked


@pytest.mark.parametrize("host", ["shop-a.test", "platform.test"])
def test_a_too_large_photo_is_refused_unread_on_a_shops_and_the_public_domain(shops, host):
    assert post(host, HUGE, b"x") == (413, 0)
    assert post(host, "3", b"xyz") == (400, 1)  # a small one is read, as before
