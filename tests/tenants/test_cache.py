"""This app's keys in Django's cache are each shop's own, even where ``CACHES`` lacks django-tenants'
``KEY_FUNCTION`` (a platform that set up its cache before it had shops)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_tenants.utils import schema_context

from tests.tenants.test_isolation import BANANA
from visual_search import indexing, queue, thumbnails
from visual_search.contrib.messaging import limits

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]


@pytest.fixture
def plain_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "plain"}}
    cache.clear()
    yield
    cache.clear()


def search(domain: str):
    return Client(HTTP_HOST=domain).post("/api/visual-search/search/", {"image": SimpleUploadedFile("b.jpg", BANANA, "image/jpeg")})


def test_the_api_answers_each_shop_by_its_domain(shops):
    for domain, schema in (("shop-a.test", "shop_a"), ("shop-b.test", "shop_b"), ("shop-a.test", "shop_a")):
        response = search(domain)
        assert response.status_code == 200, response.content
        assert response.json()["results"][0]["name"] == f"{schema} Banana"


def test_one_shops_customer_searches_do_not_use_up_another_shops(shops, settings, plain_cache):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    assert search("shop-a.test").status_code == 200
    assert search("shop-a.test").status_code == 429
    assert search("shop-b.test").status_code == 200


def test_a_whitening_fit_queued_for_one_shop_leaves_another_shops_to_queue(shops, plain_cache, monkeypatch):
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, *args, **options: sent.append(name))
    with schema_context("shop_a"):
        assert queue.schedule_fit()
    with schema_context("shop_b"):
        assert queue.schedule_fit()  # shop A's is not shop B's
    assert sent == [queue.FIT_WHITENING] * 2


def test_thumbnails_of_one_name_in_two_shops_are_remembered_apart(shops, plain_cache):
    with schema_context("shop_a"):
        in_a = thumbnails.cache_key(default_storage, "products/Banana.jpg", 320)
    with schema_context("shop_b"):
        in_b = thumbnails.cache_key(default_storage, "products/Banana.jpg", 320)
    assert in_a != in_b


def test_attempts_noted_by_one_shops_task_are_not_taken_back_in_another_shop(shops, plain_cache):
    """A task id is unique, but the rows it counted are ids in its own shop's schema."""
    with schema_context("shop_a"):
        indexing.hold_attempt(indexing.Attempt(here=[], alone=[], given_up=[], counted=[1, 2]), "task-1")
    with schema_context("shop_b"):
        assert indexing.take_back("task-1") == 0
    with schema_context("shop_a"):
        assert indexing.take_back("task-1") == 2


def test_a_customer_writing_to_two_shops_bots_is_counted_and_deduplicated_by_each(shops, plain_cache, monkeypatch):
    """Each shop's bot numbers its Telegram updates from its own counter; a customer's chat id is the
    same for every bot (a WhatsApp one is their phone number)."""
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))  # one rate window throughout
    for schema in ("shop_a", "shop_b"):
        with schema_context(schema):
            assert limits.first_time("telegram", "1001"), schema
            assert limits.allow("telegram", "42", (1, 3600)), schema
            assert not limits.allow("telegram", "42", (1, 3600))
            assert limits.warn_once("telegram", "42", (1, 3600)), schema
            assert not limits.first_time("telegram", "1001")
