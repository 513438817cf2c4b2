"""Where a customer's photo, and what is known of the customer, goes (docs/privacy.md): temporary
files, the cache, the database, the storage. The messaging bots' part is in test_whatsapp.py and
test_telegram.py."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.conftest import catalogue_image
from tests.test_api import SEARCH, shop, upload  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER_IP = "93.184.216.34"


@pytest.fixture(autouse=True)
def throttled(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "5/min"}
    cache.clear()
    yield
    cache.clear()


def test_the_throttle_s_cache_key_holds_no_ip_address(client, shop):  # noqa: F811
    photo = catalogue_image("Banana").read_bytes()
    assert client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR=CUSTOMER_IP).status_code == 200
    assert client.post("/search-by-photo/", {"image": upload(photo)}, REMOTE_ADDR=CUSTOMER_IP).status_code == 200
    keys = list(cache._cache)  # tests' LocMemCache; Redis lists the same keys
    assert any("throttle_visual_search_" in key for key in keys)
    assert not [key for key in keys if CUSTOMER_IP in key]
