"""The package's pages and API served by ASGI (uvicorn, daphne, hypercorn): Django's AsyncClient, and
requests through Django's ASGI handler itself (tests/asgi.py), under a path prefix too.

Django runs the package's views (all synchronous) in a thread per request under ASGI; these check
that nothing in them needs the WSGI handler: the multipart body read before the view, HEAD, the
prefix from the scope's ``root_path``, and no warning from Django's ASGI handler.
"""

import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient

from tests.asgi import asgi_request
from tests.conftest import catalogue_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]


@pytest.fixture
def shop(make_product):
    return {name: make_product(name.replace("-", " "), catalogue_image(name)) for name in ["Pink-Lady", "Banana", "Arla-Standard-Milk"]}


def multipart(data: bytes, **fields) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                 + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_async_client_searches_by_photo(shop):
    with catalogue_image("Banana").open("rb") as photo:
        response = async_to_sync(AsyncClient().post)("/api/visual-search/search/", {"image": photo, "limit": 2})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2 and results[0]["id"] == shop["Banana"].pk
    assert results[0]["image_url"].startswith("http://testserver/media/visual_search/thumbnails/")


def test_async_client_gets_similar_products_and_the_errors(shop):
    client = AsyncClient()
    response = async_to_sync(client.get)(f"/api/visual-search/products/{shop['Pink-Lady'].pk}/similar/")
    assert response.status_code == 200 and shop["Pink-Lady"].pk not in [r["id"] for r in response.json()["results"]]
    assert async_to_sync(client.get)("/api/visual-search/products/99999/similar/").json()["code"] == "not_found"
    truncated = SimpleUploadedFile("p.jpg", catalogue_image("Banana").read_bytes()[:3000], content_type="image/jpeg")
    broken = async_to_sync(client.post)("/api/visual-search/search/", {"image": truncated})
    assert broken.status_code == 400 and broken.json()["code"] == "invalid_image"


def test_async_client_shows_the_widget_page_and_its_results(shop):
    client = AsyncClient()
    page = async_to_sync(client.get)("/search-by-photo/")
    assert page.status_code == 200 and b'data-api-url="/api/visual-search/search/"' in page.content
    with catalogue_image("Pink-Lady").open("rb") as photo:
        answered = async_to_sync(client.post)("/search-by-photo/", {"image": photo})
    assert answered.status_code == 200 and f"/products/{shop['Pink-Lady'].pk}/".encode() in answered.content


def test_the_asgi_handler_searches_a_multipart_photo_with_no_warning(shop):
    body, content_type = multipart(catalogue_image("Pink-Lady").read_bytes(), limit="2")
    response = asgi_request("/api/visual-search/search/", "POST", body=body, headers={"content-type": content_type})
    assert response.status == 200, response.body[:300]
    assert response.json()["results"][0]["id"] == shop["Pink-Lady"].pk
    assert response.warnings == []


@pytest.mark.parametrize("url", ["/search-by-photo/", "/api/visual-search/products/{pk}/similar/", "/api/visual-search/schema/",
                                 "/api/visual-search/docs/"])
def test_head_through_the_asgi_handler_has_get_s_headers_and_no_body(shop, url):
    url = url.format(pk=shop["Banana"].pk)
    get, head = asgi_request(url), asgi_request(url, "HEAD")
    assert get.status == head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(get.body)
    assert head.warnings == get.warnings == []


def test_under_a_root_path_the_widget_and_the_api_say_the_prefix(shop):
    """uvicorn --root-path /shop (a proxy that strips /shop): the form's action, the API URL the
    script posts to, and the results' thumbnails are below the prefix."""
    page = asgi_request("/search-by-photo/", root_path="/shop").body.decode()
    assert 'action="/shop/search-by-photo/"' in page and 'data-api-url="/shop/api/visual-search/search/"' in page
    assert re.search(r'src="/static/visual_search/widget\.js', page)  # STATIC_URL is the shop's to set (docs/deployment.md)
    body, content_type = multipart(catalogue_image("Banana").read_bytes())
    found = asgi_request("/api/visual-search/search/", "POST", root_path="/shop", body=body, headers={"content-type": content_type})
    assert found.status == 200 and found.json()["results"][0]["id"] == shop["Banana"].pk
