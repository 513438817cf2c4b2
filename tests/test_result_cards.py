"""Result cards a shop can use: absolute links, small cached thumbnails, and the shop's own fields
(price, currency, availability) from its RESULT_ADAPTER, the same in the API, the search page and
{% similar_products %}."""

import html
import io
import json
import logging
import re
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest
from django.core.cache import cache
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.template import Context, Template
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from PIL import Image
from rest_framework import serializers

from tests.conftest import catalogue_image
from visual_search import results as results_module, thumbnails as thumbnails_module
from visual_search.api.serializers import SearchResultSerializer
from visual_search.checks import check_for
from visual_search.results import ResultAdapter, describe
from visual_search.search import SearchResult
from visual_search.widget import price_text

pytestmark = pytest.mark.django_db(transaction=True)

SEARCH = "/api/visual-search/search/"
SIZE = 64  # smaller than the 198 px catalogue images, so a thumbnail is visibly smaller
BASE = {"id", "name", "url", "image_url", "score"}


class StockAdapter(ResultAdapter):
    """A shop's adapter: availability from its own field, a fixed price, one prepare() per list."""

    prepared: ClassVar[list[int]] = []

    def prepare(self, objects, request=None):
        StockAdapter.prepared.append(len(objects))

    def extra(self, obj, request=None):
        return {"price": "12.90", "currency": "SEK", "available": obj.in_stock}


class DecimalAdapter(ResultAdapter):
    """A shop whose adapter hands over the model's DecimalField as it is."""

    def extra(self, obj, request=None):
        return {"price": Decimal("1234.50"), "currency": "SEK"}


class ClashingAdapter(ResultAdapter):
    def extra(self, obj, request=None):
        return {"name": "hacked", "url": "https://evil.example/", "score": 2.0, "object": None, "badge": "new"}


class CdnAdapter(ResultAdapter):
    """A shop with its own thumbnailer: its absolute URL is kept as it is."""

    def thumbnail_url(self, obj, image):
        return f"https://cdn.example/{Path(image.name).name}" if image else None


class EuroSerializer(SearchResultSerializer):
    """An API_RESULT_SERIALIZER subclass: its declared field wins over an extra of the same name."""

    currency = serializers.SerializerMethodField()

    def get_currency(self, item):
        return "EUR"


@pytest.fixture(autouse=True)
def card_settings(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None, "THUMBNAIL_SIZE": SIZE}
    StockAdapter.prepared = []
    cache.clear()
    yield
    cache.clear()


def use_adapter(settings, adapter: type) -> None:
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RESULT_ADAPTER": f"{__name__}.{adapter.__name__}"}


@pytest.fixture
def shop(make_product):
    made = {}
    for name, in_stock in [("Arla-Standard-Milk", True), ("Oatly-Oat-Milk", False), ("Pink-Lady", True)]:
        made[name] = make_product(name.replace("-", " "), catalogue_image(name), in_stock=in_stock)
    return made


def search(client, name="Pink-Lady"):
    photo = SimpleUploadedFile("photo.jpg", catalogue_image(name).read_bytes(), content_type="image/jpeg")
    response = client.post(SEARCH, {"image": photo})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def thumbnails(media_root: Path) -> dict[str, int]:
    folder = media_root / "visual_search" / "thumbnails"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.exists() else {}


def served(media_root: Path, url: str) -> Image.Image:
    return Image.open(media_root / url.split("/media/", 1)[1])


def test_api_urls_are_absolute_and_the_picture_is_a_small_jpeg(client, shop, media_root):
    first = search(client)[0]
    assert first["id"] == shop["Pink-Lady"].pk
    assert first["url"] == f"http://testserver/products/{shop['Pink-Lady'].pk}/"
    assert first["image_url"].startswith("http://testserver/media/visual_search/thumbnails/")
    assert first["image_url"].endswith(".jpg")
    with served(media_root, first["image_url"]) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert max(image.size) == SIZE  # 198 x 198 -> 64 x 64
    assert set(first) == BASE  # the default adapter adds nothing


def test_a_thumbnail_is_made_once_and_reused(client, shop, media_root, monkeypatch):
    """On this machine's disk the first search that shows an image makes its thumbnail (in
    milliseconds; the indexing task makes them for a bucket's files: test_remote_storage)."""
    assert thumbnails(media_root) == {}
    renders = []
    original = thumbnails_module.render
    monkeypatch.setattr(thumbnails_module, "render", lambda *a: renders.append(a[1]) or original(*a))
    first = search(client)
    made = thumbnails(media_root)
    assert len(made) == len(renders) == 3  # one per product
    assert search(client) == first  # same URLs, from the cache: no storage call
    cache.clear()  # a new process: the files are found in storage, not made again
    assert search(client) == first
    assert thumbnails(media_root) == made and len(renders) == 3


def test_a_new_size_makes_new_thumbnails(client, shop, media_root, settings):
    small = search(client)[0]["image_url"]
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "THUMBNAIL_SIZE": 32}
    smaller = search(client)[0]["image_url"]
    assert small != smaller
    with served(media_root, smaller) as image:
        assert max(image.size) == 32


def test_the_thumbnail_follows_exif_orientation(make_product, media_root, rf):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.new("RGB", (200, 100), (10, 120, 200)).save(buffer, "JPEG", exif=exif)
    product = make_product("Rotated", buffer.getvalue())
    [item] = describe([SearchResult(product, 0.5)], rf.get("/"))
    with served(media_root, item["image_url"]) as image:
        assert image.size == (32, 64)


@pytest.mark.parametrize("broken", ["not an image", "too many pixels"])
def test_an_unreadable_image_shows_the_original_and_no_error(make_product, rf, settings, caplog, jpeg_bytes, broken):
    data = b"not an image at all"
    if broken == "too many pixels":  # a real 80 x 60 image, over a MAX_PIXELS of 100
        settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_PIXELS": 100}
        data = jpeg_bytes()
    product = make_product("Broken", data)
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        [item] = describe([SearchResult(product, 0.5)], rf.get("/"))
    assert item["image_url"] == f"http://testserver{product.image.url}"
    assert "No thumbnail of products/Broken" in caplog.text
    caplog.clear()
    describe([SearchResult(product, 0.5)], rf.get("/"))
    assert "No thumbnail" not in caplog.text  # the failure is remembered: not decoded on every request


def test_an_object_without_a_picture_has_none(make_product, rf):
    [item] = describe([SearchResult(make_product("Bare"), 0.5)], rf.get("/"))
    assert item["image_url"] is None and item["url"].startswith("http://testserver/products/")


def test_a_product_without_its_own_image_shows_its_gallery_s_first_in_the_gallery_s_order(make_product, monkeypatch):
    """The card showed the oldest gallery image whatever the gallery's Meta.ordering (a primary
    flag, a position) said: a shop that chose another first image never saw it in the results."""
    from django.core.files.base import ContentFile

    from tests.testapp.models import ProductImage

    product = make_product("Apple")
    for name in ("Granny-Smith", "Pink-Lady"):
        ProductImage(product=product).image.save(f"{name}.jpg", ContentFile(catalogue_image(name).read_bytes()))
    assert "Granny-Smith" in results_module.images([product])[product.pk].name  # no ordering: the oldest
    monkeypatch.setattr(ProductImage._meta, "ordering", ["-pk"])
    assert "Pink-Lady" in results_module.images([product])[product.pk].name


def test_extra_fields_appear_in_the_api_json(client, shop, settings):
    use_adapter(settings, StockAdapter)
    results = search(client)
    assert StockAdapter.prepared == [3]  # once for the list, not once per result
    oatly = next(r for r in results if r["id"] == shop["Oatly-Oat-Milk"].pk)
    assert oatly["price"] == "12.90" and oatly["currency"] == "SEK" and oatly["available"] is False
    assert list(oatly)[:5] == ["id", "name", "url", "image_url", "score"]
    similar = client.get(f"/api/visual-search/products/{shop['Pink-Lady'].pk}/similar/").json()["results"]
    assert all({"price", "currency", "available"} <= set(r) for r in similar) and len(similar) == 2


def test_extra_fields_cannot_replace_the_base_fields(client, shop, settings, rf):
    use_adapter(settings, ClashingAdapter)
    first = search(client)[0]
    assert first["name"] == "Pink Lady" and first["url"].startswith("http://testserver/products/")
    assert first["score"] <= 1.0 + 1e-6 and first["badge"] == "new"
    [item] = describe([SearchResult(shop["Pink-Lady"], 0.5)], rf.get("/"))
    assert item["object"] == shop["Pink-Lady"] and item["name"] == "Pink Lady" and item["badge"] == "new"


def test_an_adapters_own_absolute_thumbnail_url_is_kept(client, shop, settings):
    use_adapter(settings, CdnAdapter)
    first = search(client)[0]
    assert first["image_url"] == "https://cdn.example/Pink-Lady.jpg"
    assert first["url"].startswith("http://testserver/")


def test_a_result_serializer_subclass_keeps_working_and_wins_over_extras(client, shop, settings):
    use_adapter(settings, StockAdapter)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_RESULT_SERIALIZER": f"{__name__}.EuroSerializer"}
    first = search(client)[0]
    assert first["currency"] == "EUR" and first["price"] == "12.90" and first["available"] is True


def test_the_openapi_schema_describes_the_result_serializer_subclass(settings):
    """The schema described the base serializer: a client generated from it had no typed currency."""
    from drf_spectacular.generators import SchemaGenerator

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_RESULT_SERIALIZER": f"{__name__}.EuroSerializer"}
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, method in (("/api/visual-search/search/", "post"), ("/api/visual-search/products/{id}/similar/", "get")):
        response = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        results = schema["components"]["schemas"][response.rsplit("/", 1)[1]]["properties"]["results"]["items"]["$ref"]
        item = schema["components"]["schemas"][results.rsplit("/", 1)[1]]
        assert {"id", "name", "url", "image_url", "score", "currency"} <= set(item["properties"])
        assert "additionalProperties" in item  # the adapter's extras, still allowed


def test_extra_fields_appear_on_the_search_page(client, shop, settings):
    use_adapter(settings, StockAdapter)
    photo = SimpleUploadedFile("photo.jpg", catalogue_image("Pink-Lady").read_bytes(), content_type="image/jpeg")
    response = client.post("/search-by-photo/", {"image": photo})
    assert response.status_code == 200
    items = response.context["visual_search_results"]
    assert items[0]["object"] == shop["Pink-Lady"]
    assert {(i["name"], i["currency"], i["available"]) for i in items} == {
        ("Pink Lady", "SEK", True), ("Arla Standard Milk", "SEK", True), ("Oatly Oat Milk", "SEK", False)
    }
    assert items[0]["image_url"] in response.content.decode()  # the card shows the thumbnail


def card_price(html: str) -> str:
    return html.split('data-vs-field="price"', 1)[1].split(">", 1)[1].split("</span>", 1)[0]


@pytest.mark.parametrize(("language", "grouped", "written"), [
    ("en", False, "1234.50 SEK"), ("de", False, "1234,50 SEK"), ("fr", False, "1234,50 SEK"),
    ("en", True, "1,234.50 SEK"), ("de", True, "1.234,50 SEK"),
])
def test_a_decimal_price_is_written_alike_by_the_page_and_the_script(client, shop, settings, language, grouped, written):
    """A Decimal price goes into the JSON as a number (1234.5: the JSON's shape is kept); the script
    wrote that as "1234.5 SEK" where the no-JavaScript page wrote "1234,50 SEK". Both write the shop's
    format now: the page here; the script from the same shape, in tests/test_browser.py."""
    use_adapter(settings, DecimalAdapter)
    settings.USE_THOUSAND_SEPARATOR = grouped
    assert search(client)[0]["price"] == 1234.5  # a number, as before
    with translation.override(language):
        page = render_to_string("visual_search/result_card.html", {"item": {"name": "Oat milk", "price": Decimal("1234.50"), "currency": "SEK"}})
        assert card_price(page) == written
        # What the script is told, in the widget's data-vs-messages: the same language's separators.
        widget = Template("{% load visual_search %}{% visual_search_widget %}").render(Context({}))
    decimal = {"en": ".", "de": ",", "fr": ","}[language]
    assert f'&quot;decimal&quot;: &quot;{decimal}&quot;' in widget
    assert f'&quot;grouping&quot;: {3 if grouped else 0}' in widget


@pytest.mark.parametrize(("language", "price", "currency", "written"), [
    ("en", Decimal("1200"), "JPY", "1,200 JPY"), ("de", Decimal("1200"), "JPY", "1.200 JPY"),
    ("en", 1200, "KRW", "1,200 KRW"), ("en", 1200.0, "isk", "1,200 isk"),
    ("en", Decimal("1.5"), "KWD", "1.500 KWD"), ("de", Decimal("1234.5"), "BHD", "1.234,500 BHD"),
    ("en", Decimal("1200"), None, "1,200.00"), ("en", Decimal("1200"), "SEK", "1,200.00 SEK"),
    ("en", Decimal("1200"), "XYZ", "1,200.00 XYZ"), ("en", "1200.00", "JPY", "1200.00 JPY"),
])
def test_a_number_price_has_its_currency_s_decimals(settings, language, price, currency, written):
    """A yen price given as a number read "1,200.00 JPY" and a Kuwaiti dinar one "1.50 KWD" (a digit
    lost): every price had two decimals. A number now has its ISO 4217 currency's minor unit; two
    without a currency or for one not known; a string stays as the adapter wrote it."""
    settings.USE_THOUSAND_SEPARATOR = True
    item = {"name": "Oat milk", "price": price, **({"currency": currency} if currency else {})}
    with translation.override(language):
        assert card_price(render_to_string("visual_search/result_card.html", {"item": item})) == written
        # An overridden card's filter: the result, or its price with the currency as argument.
        assert Template("{% load visual_search %}{{ item|vs_price }}").render(Context({"item": item})) == written.split(" ")[0]
        with_currency = Template("{% load visual_search %}{{ item.price|vs_price:item.currency }}")
        assert with_currency.render(Context({"item": {**item, "currency": currency}})) == written.split(" ")[0]


@pytest.mark.parametrize(("price", "currency", "written"), [
    (Decimal("1098.90"), "JPY", "1099"), (Decimal("1200.5"), "JPY", "1201"), (Decimal("1200.49"), "JPY", "1200"),
    (Decimal("1.235"), None, "1.24"), (1.005, None, "1.01"), (Decimal("-1.235"), None, "-1.24"),
    (Decimal("1.0005"), "KWD", "1.001"), (Decimal("-0.001"), None, "0.00"), (10**40, None, "1" + "0" * 40 + ".00"),
])
def test_a_number_price_is_rounded_as_the_script_rounds_it(price, currency, written):
    """A yen price of Decimal("1098.90") (tax included) read "1098 JPY" on the page's card and
    "1099 JPY" on the script's: Django's number_format cut the digits where the script rounded. Both
    round half up on the price's decimal digits now (the script's side in tests/test_browser.py)."""
    with translation.override("en"):
        assert price_text(price, currency) == written


def test_the_script_is_told_each_currency_s_decimals():
    """The script writes a number price from the same table as the page (tests/test_browser.py):
    it is in the widget's number shape, with only the currencies whose decimals are not two."""
    widget = Template("{% load visual_search %}{% visual_search_widget %}").render(Context({}))
    messages = json.loads(html.unescape(widget.split('data-vs-messages="', 1)[1].split('"', 1)[0]))
    decimals = messages["number"]["currency_decimals"]
    assert decimals["JPY"] == 0 and decimals["KRW"] == 0 and decimals["ISK"] == 0 and decimals["CLP"] == 0
    assert decimals["KWD"] == 3 and decimals["BHD"] == 3 and "SEK" not in decimals and "EUR" not in decimals


def test_a_price_the_adapter_wrote_as_text_is_shown_as_it_came(settings):
    settings.USE_THOUSAND_SEPARATOR = True
    with translation.override("de"):
        for price in ("12.90", "12,90", "ab 9 €"):
            page = render_to_string("visual_search/result_card.html", {"item": {"name": "Oat milk", "price": price}})
            assert card_price(page) == price


def test_extra_fields_appear_in_similar_products(shop, settings, rf):
    use_adapter(settings, StockAdapter)
    template = Template("{% load visual_search %}{% similar_products product limit=3 as similar %}")
    context = Context({"product": shop["Arla-Standard-Milk"], "request": rf.get("/")})
    template.render(context)
    similar = context["similar"]
    assert len(similar) == 2 and all(item["currency"] == "SEK" and "available" in item for item in similar)
    assert all(item["url"].startswith("http://testserver/") for item in similar)
    assert all("/media/visual_search/thumbnails/" in item["image_url"] for item in similar)


def test_a_page_of_cached_thumbnails_costs_no_storage_call(shop, rf, monkeypatch):
    items = [SearchResult(product, 0.5) for product in shop.values()]
    describe(items, rf.get("/"))
    for method in ("exists", "get_modified_time", "open", "save"):
        monkeypatch.setattr(FileSystemStorage, method, lambda *a, **k: pytest.fail("storage was called"))
    with CaptureQueriesContext(connection) as queries:
        again = describe(items, rf.get("/"))
    assert all("/thumbnails/" in item["image_url"] for item in again)
    assert len(queries) <= 2  # the gallery lookup for products without their own image, at most


def test_the_setting_is_checked():
    assert check_for("RESULT_ADAPTER")("visual_search.results.ResultAdapter") == []
    assert check_for("RESULT_ADAPTER")(f"{__name__}.StockAdapter") == []
    assert [m.id for m in check_for("RESULT_ADAPTER")("no.such.Adapter")] == ["visual_search.E023"]
    assert [m.id for m in check_for("RESULT_ADAPTER")(f"{__name__}.EuroSerializer")] == ["visual_search.E020"]
    assert [m.id for m in check_for("THUMBNAIL_SIZE")(8)] == ["visual_search.E021"]


def test_the_schema_says_results_carry_the_shops_fields():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    result = schema["components"]["schemas"]["SearchResult"]
    assert BASE <= set(result["properties"])
    assert "RESULT_ADAPTER" in result["additionalProperties"]["description"]


def test_a_result_without_a_page_is_a_card_not_a_link_to_nowhere():
    """A model without get_absolute_url gives "url": null: the card used to be a link to "#",
    which scrolled the customer to the top of the page. The script does the same (no href)."""
    from django.template.loader import render_to_string

    with_page = render_to_string("visual_search/result_card.html", {"item": {"name": "Banana", "url": "/p/1/", "score": 0.5}})
    without = render_to_string("visual_search/result_card.html", {"item": {"name": "Banana", "url": None, "score": 0.5}})
    assert '<a class="vs-card-link" href="/p/1/"' in with_page
    assert '<a class="vs-card-link" data-vs-field="url">' in without and 'href="#"' not in without


def test_a_phone_s_card_keeps_its_score_on_one_line():
    """On a 390 px phone (two cards a row, about 137 px inside each) "67 % de correspondance" (fr)
    and "67 % Übereinstimmung" (de) wrapped onto two lines. The score's size follows the card's
    width: measured in Chromium with DejaVu Sans (the widest of the usual system fonts), the longest,
    "100 % de correspondance", is 13.1 em wide; at 7.6 % of the width per em it fits."""

    css = (Path(results_module.__file__).parent / "static/visual_search/widget.css").read_text()
    assert re.search(r"\.vs-card-details \{ container-type: inline-size; \}", css)
    found = re.search(r"\.vs-card-score \{ font-size: max\([\d.]+em, min\(1em, ([\d.]+)cqi\)\); \}", css)
    assert found and 13.1 * float(found[1]) / 100 <= 1


def test_on_a_phone_the_score_is_12_px_at_least_in_cards_wide_enough_for_one_line():
    """At 320 px (and on a 390 px phone's search page) the score shrank to 9.5 px letters to keep
    one line. On a phone it stops at 12 px (with 16 px text), and two cards a row only where each is
    wide enough for the longest score at that size (13.1 em, see above) and the card's padding."""
    css = (Path(results_module.__file__).parent / "static/visual_search/widget.css").read_text()
    everywhere = re.search(r"\n\.vs-card-score \{ font-size: max\(([\d.]+)em, min\(1em, 7\.6cqi\)\); \}", css)
    assert everywhere and float(everywhere[1]) * .85 * 16 >= 11.99  # .vs-card-details is .85em; a desktop dialog's 9.5 px before
    phone = css[css.index("@media (max-width: 420px)"):]
    columns = re.search(r"\.vs-grid:has\(\.vs-card-score\) \{ grid-template-columns: repeat\(auto-fill, minmax\(max\(calc\(50% - \.3rem\), min\(100%, ([\d.]+)em\)\), 1fr\)\); \}", phone)
    padding = 2 * .6 * .85 + 2 / 16  # .vs-card-details' side padding (.6em of .85em) and the card's border, in em
    assert columns and float(columns[1]) >= 13.1 * .75 + padding
