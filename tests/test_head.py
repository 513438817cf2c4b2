"""HEAD (a load balancer's health check, ``curl -I``) on the package's pages: GET's status and
headers, and no body sent to the WSGI server, which gunicorn logs a warning for each time."""

import pytest
from django.test import client as test_client

from tests.conftest import catalogue_image

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def as_the_server_gets_it(monkeypatch):
    """The test client drops a HEAD response's body itself, as a web server would: here it does not,
    so a test sees what gunicorn is handed."""
    monkeypatch.setattr(test_client, "conditional_content_removal", lambda request, response: response)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_head_answers_as_get_without_a_body(client, make_product, as_the_server_gets_it):
    """gunicorn logged "WSGI app sent body bytes on a no-body response (method=HEAD status=200)" for
    every HEAD on the search page, the similar products, the API's schema, its docs and their files."""
    product = make_product("Banana", catalogue_image("Banana"))
    for url in ["/search-by-photo/", f"/api/visual-search/products/{product.pk}/similar/", "/api/visual-search/schema/",
                "/api/visual-search/docs/", "/api/visual-search/docs/swagger-ui/swagger-ui.css"]:
        get, head = client.get(url), client.head(url)
        assert get.status_code == head.status_code == 200, url
        assert body(head) == b"", url
        assert int(head["Content-Length"]) == len(body(get)), url
        assert head["Content-Type"] == get["Content-Type"], url
