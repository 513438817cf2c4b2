"""Attacks on the customer paths that the other tests do not try (see docs/security.md)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.conftest import catalogue_image
from tests.test_api import SEARCH, shop, upload  # noqa: F401 - the fixture
from tests.test_outages import DownCache
from visual_search import serving
from visual_search import views as page_views
from visual_search.api import views as api_views
from visual_search.api.throttling import SearchRateThrottle
from visual_search.exceptions import WeightsUnavailable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.search_throttle("2/min")]


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(client, shop):  # noqa: F811
    """Without NUM_PROXIES, DRF counted by the whole X-Forwarded-For header: a new one per request,
    never throttled. A client on the internet (a public address) is counted by its connection."""
    photo = catalogue_image("Banana").read_bytes()
    direct = {"REMOTE_ADDR": "93.184.216.34"}
    codes = [client.post(SEARCH, {"image": upload(photo)}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}", **direct).status_code for n in range(3)]
    assert codes == [200, 200, 429]
    page = [client.post("/search-by-photo/", {"image": upload(photo)}, HTTP_X_FORWARDED_FOR=f"10.0.1.{n}", **direct).status_code for n in range(2)]
    assert page == [429, 429]  # the page counts in the same bucket


def test_behind_a_proxy_each_customer_counts_apart_and_a_forged_entry_gains_nothing(client, shop):  # noqa: F811
    """Reading only the connection's address would put every customer behind nginx (127.0.0.1, or a
    private network) in one bucket: the address the proxy appended, the header's last entry, counts."""
    photo = catalogue_image("Banana").read_bytes()
    for proxy in ("127.0.0.1", "10.1.2.3"):
        cache.clear()
        codes = [client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(3)]
        assert codes == [200, 200, 200], proxy  # three customers
    cache.clear()
    # One customer writing its own first entry: the proxy appends the address it saw, which counts.
    codes = [
        client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 198.51.100.50").status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]


def test_num_proxies_still_reads_the_proxy_s_address(client, shop, settings):  # noqa: F811
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # DRF reloads its settings
    photo = catalogue_image("Banana").read_bytes()
    codes = [client.post(SEARCH, {"image": upload(photo)}, HTTP_X_FORWARDED_FOR=f"6.6.6.6, 10.0.0.{n}").status_code for n in range(3)]
    assert codes == [200, 200, 200]  # three customers behind one proxy, each with its own bucket


class UnreadBody:
    """A request body that records whether anything read it (a huge upload still on the wire)."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, size=-1):
        self.read_bytes += 1 if size else 0
        return b"x" * (size if size and size > 0 else 1024)

    def readline(self, size=-1):
        return self.read(size)


@pytest.mark.parametrize("headers, status", [
    ({"CONTENT_LENGTH": str(500 * 1024 * 1024)}, 413),  # "500 MB coming"
    ({"HTTP_TRANSFER_ENCODING": "chunked"}, 411),  # no length: Django would read it as empty
])
def test_the_search_page_refuses_a_huge_or_chunked_upload_before_reading_it(client, headers, status):
    """The page parsed the whole form (request.POST, for its widget's id) before checking the length:
    a 500 MB body was read and spooled to disk; a chunked one was read as empty ("choose a photo")."""
    body = UnreadBody()
    response = client.generic(
        "POST", "/search-by-photo/", b"",
        **{"wsgi.input": body, "CONTENT_TYPE": "multipart/form-data; boundary=BoUnDaRy", **headers},
    )
    assert response.status_code == status
    assert body.read_bytes == 0


def test_viewing_staff_cannot_recompute_the_index_from_its_admin_page(client, make_product):
    """The index's "Recompute the selected embeddings" needed no permission beyond view: a clerk
    could "select all" and set every worker recomputing the whole catalogue."""
    from django.contrib.auth.models import Permission, User

    from visual_search.models import ImageEmbedding

    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    before = list(ImageEmbedding.objects.values_list("pk", "updated_at"))
    clerk = User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(codename="view_imageembedding"))
    client.force_login(clerk)
    page = "/admin/visual_search/imageembedding/"
    assert client.get(page).status_code == 200  # may look
    assert 'value="requeue"' not in client.get(page).content.decode()  # not offered
    client.post(page, {"action": "requeue", "_selected_action": [pk for pk, _ in before]})
    assert list(ImageEmbedding.objects.values_list("pk", "updated_at")) == before  # nothing recomputed
    clerk.user_permissions.add(Permission.objects.get(codename="change_imageembedding"))
    assert 'value="requeue"' in client.get(page).content.decode()


def test_signing_up_does_not_escape_the_throttle(client, shop):  # noqa: F811
    """Signed-in customers were not limited at all: a script signed up once and searched without end."""
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("script", "s@example.com", "pw"))
    photo = catalogue_image("Banana").read_bytes()
    codes = [client.post(SEARCH, {"image": upload(photo)}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.post("/search-by-photo/", {"image": upload(photo)}).status_code == 429
    client.logout()  # the address's own bucket is another
    assert client.post(SEARCH, {"image": upload(photo)}).status_code == 200


def scan_bomb(copies: int) -> bytes:
    """A progressive JPEG whose last scan is repeated ``copies`` times: libjpeg decodes each one
    over the whole image (a warning, not an error), so a few MB cost minutes of CPU. Its smallest
    scan is repeated: a few bytes."""
    import io

    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(0).random((1000, 1000, 3)) * 40 + 100).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=30)
    data = buffer.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]
    scans = [data[start:end] for start, end in zip(starts, [*starts[1:], len(data) - 2])]  # to the next, or to the end
    return data[:-2] + min(scans, key=len) * copies + data[-2:]


def test_a_jpeg_of_countless_scans_is_refused_before_decoding(client, shop):  # noqa: F811
    """A progressive JPEG "scan bomb" under the upload limit took minutes of CPU per search."""
    import time

    from visual_search.embeddings.images import MAX_JPEG_SCANS, open_image
    from visual_search.exceptions import InvalidImage

    assert open_image(scan_bomb(MAX_JPEG_SCANS - 20), max_pixels=40_000_000, allowed_formats=["JPEG"]).size == (1000, 1000)
    bomb = scan_bomb(200_000)
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="200,0"):
        open_image(bomb, max_pixels=40_000_000, allowed_formats=["JPEG"])
    assert time.perf_counter() - started < 1  # it took 40 s
    response = client.post(SEARCH, {"image": upload(bomb)})
    assert response.status_code == 400 and response.json()["code"] == "invalid_image"


def test_one_ipv6_network_is_one_client(client, shop):  # noqa: F811
    """Each IPv6 address was its own bucket: a script on one machine has 2**64 of them (its /64)."""
    photo = catalogue_image("Banana").read_bytes()
    codes = [client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR=f"2001:db8:1:2::{n:x}").status_code for n in range(3)]
    assert codes == [200, 200, 429]
    assert client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR="2001:db8:1:3::1").status_code == 200  # another network


def test_a_proxy_header_that_is_no_address_counts_by_the_connection(client, shop, settings):  # noqa: F811
    """With NUM_PROXIES larger than the proxies in front, the counted entry is the client's own text."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    photo = catalogue_image("Banana").read_bytes()
    codes = [client.post(SEARCH, {"image": upload(photo)}, HTTP_X_FORWARDED_FOR=f"junk {n}").status_code for n in range(3)]
    assert codes == [200, 200, 429]


def weights_missing(*args, **kwargs):
    """The model still loading after a deploy, its weights not there yet: searches answer 503."""
    raise WeightsUnavailable("no weights")


def a_bug(results):
    raise ZeroDivisionError("a bug: the search answers 500")


@pytest.mark.parametrize(("path", "view_module"), [(SEARCH, api_views), ("/search-by-photo/", page_views)])
def test_a_search_the_server_could_not_answer_does_not_count(shop, monkeypatch, path, view_module):  # noqa: F811
    """With "2/min", a 503 (the model loading) and the widget's retry after Retry-After: the retry
    was 429, the client's searches used up by the server's failures. Only that search's count is
    given back, not a 500's (a bug a script could repeat); the limit still holds."""
    client = Client(raise_request_exception=False)
    photo = catalogue_image("Banana").read_bytes()
    assert client.post(path, {"image": upload(photo)}).status_code == 200
    with monkeypatch.context() as patch:
        patch.setattr(serving, "get_extractor", weights_missing)
        assert client.post(path, {"image": upload(photo)}).status_code == 503
    with monkeypatch.context() as patch:
        patch.setattr(view_module, "confident", a_bug)
        assert client.post(path, {"image": upload(photo)}).status_code == 500
    assert client.post(path, {"image": upload(photo)}).status_code == 429


@pytest.mark.parametrize("path", [SEARCH, "/search-by-photo/"])
def test_a_search_refused_for_the_client_s_fault_still_counts(client, shop, path):  # noqa: F811
    """A 4xx is the client's (a script's): a broken image still uses up a search."""
    assert client.post(path, {"image": upload(b"not an image at all")}).status_code == 400
    photo = catalogue_image("Banana").read_bytes()
    assert [client.post(path, {"image": upload(photo)}).status_code for _ in range(2)] == [200, 429]


def test_the_cache_gone_before_the_count_is_given_back_still_answers_503(client, shop, monkeypatch):  # noqa: F811
    def cache_gone_too(*args, **kwargs):
        monkeypatch.setattr(SearchRateThrottle, "cache", DownCache())
        weights_missing()

    monkeypatch.setattr(serving, "get_extractor", cache_gone_too)
    response = client.post(SEARCH, {"image": upload(catalogue_image("Banana").read_bytes())})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"


def test_the_bucket_of_an_address():
    from visual_search.api.throttling import client_network

    assert client_network("203.0.113.9") == "203.0.113.9"
    assert client_network("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_network("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_network("not an address") is None and client_network(None) is None


def test_viewing_staff_are_not_offered_the_index_button_they_may_not_press(client, make_product, settings):
    """The product list showed "Index missing, stale and failed images" to staff with view only: 403 when pressed."""
    from django.contrib import admin
    from django.contrib.auth.models import Permission, User

    from tests.conftest import serve_admin_site
    from tests.test_admin_mixin import ProductAdmin
    from tests.testapp.models import Product

    site = admin.AdminSite(name="shopadmin")
    site.register(Product, ProductAdmin)
    serve_admin_site(settings, site)
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    clerk = User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(codename="view_product"))
    client.force_login(clerk)
    page = client.get("/shopadmin/testapp/product/").content.decode()
    assert "Pink Lady" in page and "Index missing, stale and failed images" not in page
    assert client.post("/shopadmin/testapp/product/visual-search-requeue/").status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="change_product"))
    assert "Index missing, stale and failed images" in client.get("/shopadmin/testapp/product/").content.decode()


@pytest.mark.parametrize("link", ["javascript:alert(document.cookie)", " JaVa\tScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>"])
def test_a_product_link_that_is_script_is_shown_without_a_link(client, make_product, monkeypatch, rf, link):
    """A result's url went into the cards' href as it was: clicking a card ran the script in the shop's page."""
    from django.template import Context, Template

    from tests.testapp.models import Product

    monkeypatch.setattr(Product, "get_absolute_url", lambda self: link if self.name == "Pink Lady" else f"/products/{self.pk}/")
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    banana = make_product("Banana", catalogue_image("Banana"))
    found = {r["name"]: r["url"] for r in client.post(SEARCH, {"image": upload(catalogue_image("Pink-Lady").read_bytes())}).json()["results"]}
    assert found == {"Pink Lady": None, "Banana": f"http://testserver/products/{banana.pk}/"}
    page = client.post("/search-by-photo/", {"image": upload(catalogue_image("Pink-Lady").read_bytes())}).content.decode()
    assert "cript:" not in page.lower() and "data:text" not in page
    cards = Template("{% load visual_search %}{% similar_products p %}").render(Context({"p": banana, "request": rf.get("/")}))
    assert "Pink Lady" in cards and "cript:" not in cards.lower() and "data:text" not in cards
    assert client.get(f"/api/visual-search/products/{banana.pk}/similar/").json()["results"][0]["url"] is None
