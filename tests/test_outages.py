"""What customers get while a service is down: the database (503 with Retry-After), the cache
(Redis: searches go on without the rate limit and the thumbnail cache), never a 500."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.db.models import QuerySet

from tests.conftest import catalogue_image
from visual_search.api.throttling import SearchRateThrottle

pytestmark = pytest.mark.django_db(transaction=True)
SEARCH = "/api/visual-search/search/"


@pytest.fixture
def shop(make_product):
    return {name: make_product(name, catalogue_image(name)) for name in ("Lime", "Kiwi")}


def photo(name="Lime"):
    return SimpleUploadedFile("p.jpg", catalogue_image(name).read_bytes(), "image/jpeg")


class DownCache:
    """A cache whose server is gone: every call raises, as django-redis does."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

        return fail


def test_the_database_down_answers_503_with_retry_after(client, shop, monkeypatch):
    def down(self):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(QuerySet, "exists", down)
    response = client.post(SEARCH, {"image": photo()})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    assert response["Retry-After"] == "10"


def test_the_database_down_for_similar_answers_503_with_retry_after(client, shop, monkeypatch):
    import visual_search.api.views as views

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(views, "_get_object", down)
    response = client.get(f"/api/visual-search/products/{shop['Lime'].pk}/similar/")
    assert response.status_code == 503 and response["Retry-After"] == "10"
    assert response.json() == {"detail": "Search by photo is not available right now; please try again later.", "code": "unavailable"}


def test_the_cache_down_leaves_searches_working(client, shop, monkeypatch, settings, caplog):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "30/min"}
    import visual_search.results as results

    monkeypatch.setattr(SearchRateThrottle, "cache", DownCache())
    monkeypatch.setattr(results, "cache", DownCache())
    response = client.post(SEARCH, {"image": photo("Kiwi")})
    assert response.status_code == 200 and response.json()["results"][0]["name"] == "Kiwi"
    assert response.json()["results"][0]["image_url"]  # the thumbnail, made without its cache
    assert "rate limit not checked" in caplog.text and "Thumbnail cache unavailable" in caplog.text
