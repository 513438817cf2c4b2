"""What an Oscar shop's customers get: only browsable products, variants found through their parent,
Oscar's prices in every result, and the pages in Oscar's layout."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from html import unescape

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from oscar.apps.partner.strategy import Selector

import visual_search
from tests.conftest import catalogue_image
from tests.oscar.conftest import HIDDEN, PARENT, VARIANT, Product, ProductImage, StockRecord
from visual_search.contrib.messaging.replies import caption
from visual_search.contrib.oscar.registration import VariantImageRegistration
from visual_search.contrib.oscar.visibility import browsable
from visual_search.models import ImageEmbedding
from visual_search.registry import get_registrations, search_model
from visual_search.reindex import select_pks
from visual_search.results import describe, images, similar_items
from visual_search.search import SearchResult, object_vector
from visual_search.serving import current_fingerprint
from visual_search.tasks import sweep

pytestmark = [pytest.mark.oscar, pytest.mark.django_db(transaction=True)]


def photo(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{name}.jpg", catalogue_image(name).read_bytes(), "image/jpeg")


def search(client, name: str) -> list[dict]:
    response = client.post("/api/visual-search/search/", {"image": photo(name)})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def registration_of_images() -> VariantImageRegistration:
    return next(r for r in get_registrations() if isinstance(r, VariantImageRegistration))


def test_installing_the_app_registers_oscars_product_images():
    [registration] = [r for r in get_registrations() if r.label == "catalogue.productimage"]
    assert isinstance(registration, VariantImageRegistration)
    assert registration.image_field == "original" and registration.result_label == "catalogue.product"
    assert search_model()._meta.label == "catalogue.Product"


def test_a_hidden_product_never_appears(catalogue, client):
    found = search(client, HIDDEN)
    assert catalogue[HIDDEN].pk not in [r["id"] for r in found]
    assert len(found) == 4  # the three public standalone products and the parent

    hidden = client.get(f"/api/visual-search/products/{catalogue[HIDDEN].pk}/similar/")
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    similar = client.get(f"/api/visual-search/products/{catalogue['Arla-Standard-Milk'].pk}/similar/").json()["results"]
    assert catalogue[HIDDEN].pk not in [r["id"] for r in similar] and similar

    page = client.post("/visual-search/", {"image": photo(HIDDEN)}).content.decode()
    assert "Oatly Oat Milk" not in page and "Arla Standard Milk" in page


def test_a_variants_photo_finds_its_parent_once(catalogue, client):
    found = search(client, VARIANT)
    ids = [r["id"] for r in found]
    assert ids[0] == catalogue[PARENT].pk and found[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert ids.count(catalogue[PARENT].pk) == 1 and catalogue[VARIANT].pk not in ids


def similar_ids(client, pk) -> list[int]:
    response = client.get(f"/api/visual-search/products/{pk}/similar/")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"results"}  # the JSON shape of any product's look-alikes
    return [r["id"] for r in response.json()["results"]]


def test_a_public_variant_s_look_alikes_are_its_parent_s(catalogue, client):
    """Oscar shows a variant on its parent's page; the similar endpoint answered "No Product with id
    N" for a variant's id, which a customer reached or the shop's code passes. It answers as the
    parent's page would (from the variant's own photo), neither the parent nor a hidden product."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    ids = similar_ids(client, variant.pk)
    assert ids and parent.pk not in ids and variant.pk not in ids and catalogue[HIDDEN].pk not in ids
    assert set(ids) == set(similar_ids(client, parent.pk))

    for image in ProductImage.objects.filter(product=variant):  # no photo of its own: the parent's look-alikes
        ImageEmbedding.objects.for_object(image).delete()
    assert similar_ids(client, variant.pk) == similar_ids(client, parent.pk)


@pytest.mark.parametrize("hide", ["variant", "parent"])
def test_a_hidden_variant_or_one_of_a_hidden_parent_is_not_found_as_an_unknown_id(catalogue, client, hide, caplog):
    """Its answer is the unknown id's: a customer learns nothing of a flavour not released yet. The
    shop's log says why."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    Product.objects.filter(pk=(variant if hide == "variant" else parent).pk).update(is_public=False)
    with caplog.at_level(logging.INFO, logger="visual_search"):
        response = client.get(f"/api/visual-search/products/{variant.pk}/similar/")
    unknown = client.get("/api/visual-search/products/999999/similar/")
    assert response.status_code == unknown.status_code == 404 and response.json()["code"] == "not_found"
    assert response.json()["detail"] == unknown.json()["detail"].replace("999999", str(variant.pk))
    why = "a variant that is not public" if hide == "variant" else f"the page of product {parent.pk}, which customers are not shown"
    assert any(why in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("hide", ["variant", "parent"])
def test_similar_products_of_a_variant_of_a_hidden_parent_shows_nothing(catalogue, rf, hide):
    """{% similar_products variant %} (a shop's code on a variant's own block) listed the look-alikes
    of a variant whose parent the shop hides, where the API answers 404: it now shows none."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    customer = rf.get("/")
    customer.user = AnonymousUser()
    assert similar_items(variant, request=customer)
    Product.objects.filter(pk=(variant if hide == "variant" else parent).pk).update(is_public=False)
    assert similar_items(Product.objects.get(pk=variant.pk), request=customer) == []


@pytest.mark.parametrize("hide", ["variant", "parent"])
def test_find_similar_for_a_customer_raises_not_shown_for_a_variant_of_a_hidden_parent(catalogue, rf, hide):
    """The Python API, given the customer's request, returned the look-alikes of a public variant
    whose parent the shop hides, where the API answers 404 and {% similar_products %} shows none:
    it raises NotShown (the API's 404), as it did for a hidden variant. Shop code without a request
    still gets them, as the docs say of the Python API without a request: it raised NotShown for a
    hidden variant (it now gets its parent's look-alikes, the variant's own photos being out of search)."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    customer = rf.get("/")
    customer.user = AnonymousUser()
    assert visual_search.find_similar(variant, request=customer)
    Product.objects.filter(pk=(variant if hide == "variant" else parent).pk).update(is_public=False)
    variant = Product.objects.get(pk=variant.pk)
    with pytest.raises(visual_search.NotShown, match="not public" if hide == "variant" else f"page of product {parent.pk}"):
        visual_search.find_similar(variant, request=customer)
    ids = [r.object.pk for r in visual_search.find_similar(variant)]
    assert ids and parent.pk not in ids and variant.pk not in ids
    if hide == "variant":  # its photo is out of search: the parent's page's look-alikes
        assert ids == [r.object.pk for r in visual_search.find_similar(parent)]


def staff_see_everything(model, request):
    """A shop's VISIBILITY rule: Oscar's browsable products, and everything to staff (who preview a
    hidden product on Oscar's page: its product view lets staff see one)."""
    if request is not None and getattr(request.user, "is_staff", False):
        return model._default_manager.all()
    return browsable(model, request)


def test_a_hidden_product_has_no_look_alikes_for_a_customer_anywhere(catalogue, client, rf, settings, tmp_path):
    """The similar endpoint answers 404 for a hidden product, but find_similar(hidden, request=customer)
    and {% similar_products %} on its page (a staff preview, a shop whose view shows it) listed its
    look-alikes. A customer now gets none anywhere; staff whom the shop's rule shows everything do."""
    hidden = Product.objects.get(pk=catalogue[HIDDEN].pk)
    customer, staff = rf.get("/"), rf.get("/")
    customer.user, staff.user = AnonymousUser(), User(username="staff", is_staff=True)
    assert client.get(f"/api/visual-search/products/{hidden.pk}/similar/").status_code == 404
    with pytest.raises(visual_search.NotShown, match=f"does not show product {hidden.pk}"):
        visual_search.find_similar(hidden, request=customer)
    assert similar_items(hidden, request=customer) == []
    assert visual_search.find_similar(hidden)  # shop code, without a request: everything

    User.objects.create_user("staff", password="pw", is_staff=True)
    client.login(username="staff", password="pw")
    assert "vs-oscar-similar" not in client.get(hidden.get_absolute_url()).content.decode()  # Oscar's rule: hidden to all

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": f"{__name__}.staff_see_everything"}
    assert visual_search.find_similar(hidden, request=staff) and similar_items(hidden, request=staff)
    assert "vs-oscar-similar" in client.get(hidden.get_absolute_url()).content.decode()
    with pytest.raises(visual_search.NotShown):
        visual_search.find_similar(hidden, request=customer)
    assert similar_items(hidden, request=customer) == []


def test_the_sql_side_agrees_that_a_variants_image_is_its_parents(catalogue):
    rows = ProductImage.objects.order_by("pk").values_list("product__id__canonical", flat=True)
    registration = next(r for r in get_registrations() if isinstance(r, VariantImageRegistration))
    assert list(rows) == [registration.result_pk(image) for image in ProductImage.objects.order_by("pk")]
    assert ProductImage.objects.filter(product__id__canonical=catalogue[PARENT].pk).count() == 2


def test_results_carry_the_strategys_price_currency_and_an_absolute_url(catalogue, client):
    milk = search(client, "Arla-Standard-Milk")[0]
    assert milk["id"] == catalogue["Arla-Standard-Milk"].pk
    assert milk["price"] == "12.90" and milk["currency"] == "EUR" and milk["available"] is True
    assert milk["url"] == f"http://testserver{catalogue['Arla-Standard-Milk'].get_absolute_url()}"
    # No sorl-thumbnail installed: visual_search's own thumbnail, absolute too.
    assert milk["image_url"].startswith("http://testserver/media/visual_search/thumbnails/")

    parent = search(client, VARIANT)[0]
    assert parent["price"] == "9.95" and parent["currency"] == "EUR"  # from its variant, as Oscar prices a parent

    StockRecord.objects.filter(product=catalogue["Banana"]).update(num_in_stock=0)
    banana = next(r for r in search(client, "Banana") if r["id"] == catalogue["Banana"].pk)
    assert banana["available"] is False


@pytest.mark.parametrize(("price", "currency", "written"), [("1200.00", "JPY", "1200"), ("1.50", "KWD", "1.500"), ("12.90", "EUR", "12.90")])
def test_a_price_has_its_currency_s_decimals(catalogue, client, price, currency, written):
    """A shop selling in yen read "1200.00 JPY" on every card, one in Kuwaiti dinars "1.50 KWD": the
    price was written with two decimals whatever its currency. It has the currency's now."""
    StockRecord.objects.filter(product=catalogue["Arla-Standard-Milk"]).update(price=Decimal(price), price_currency=currency)
    milk = next(r for r in search(client, "Arla-Standard-Milk") if r["id"] == catalogue["Arla-Standard-Milk"].pk)
    assert milk["price"] == written and milk["currency"] == currency


@pytest.mark.parametrize(("price", "currency"), [("12.90", "EUR"), ("1098.50", "JPY"), ("1290.50", "HUF"), ("25000.00", "IDR")])
def test_a_card_s_price_is_the_one_on_oscars_product_page(catalogue, client, price, currency):
    """Customers compare a card's price with the product's page. The adapter wrote ISO 4217's
    decimals where Oscar's page writes babel's (CLDR's): the card read "1290.50 HUF" and "25000.00
    IDR" where the page read "HUF 1,290" and "IDR 25,000". Both round half to even (1098.50 yen: 1098)."""
    milk = catalogue["Arla-Standard-Milk"]
    StockRecord.objects.filter(product=milk).update(price=Decimal(price), price_currency=currency)
    page = client.get(milk.get_absolute_url()).content.decode()
    shown = unescape(re.search(r'<p class="price_color">\s*(.*?)\s*</p>', page).group(1))
    card = next(r for r in search(client, "Arla-Standard-Milk") if r["id"] == milk.pk)
    assert card["price"] == re.sub(r"[^\d.]", "", shown) and card["currency"] == currency


@pytest.mark.parametrize("language", ["en", "de"])
def test_every_card_writes_the_price_as_oscars_product_page_does(catalogue, client, settings, language):
    """Oscar's product page writes "€3.10" (German "3,10 €"); the search's cards wrote "3.10 EUR" (the
    JSON the script writes, the search page's cards, a chat's caption). All write the page's text
    now, from one function; the JSON keeps ``price`` and ``currency`` for programs."""
    from django.utils import translation

    settings.LANGUAGE_CODE = language
    milk = catalogue["Arla-Standard-Milk"]
    StockRecord.objects.filter(product=milk).update(price=Decimal("3.10"))
    with translation.override(language):
        page = client.get(milk.get_absolute_url()).content.decode()
        shown = unescape(re.search(r'<p class="price_color">\s*(.*?)\s*</p>', page).group(1))
        card = next(r for r in search(client, "Arla-Standard-Milk") if r["id"] == milk.pk)
        assert (card["price"], card["currency"], card["price_display"]) == ("3.10", "EUR", shown)
        assert caption(card, 1).startswith(f"1. Arla Standard Milk — {shown} · ")
        results = unescape(client.post("/visual-search/", {"image": photo("Arla-Standard-Milk")}).content.decode())
        assert f'data-vs-field="price">{shown}</span>' in results and "3.10 EUR" not in results
        similar = unescape(client.get(catalogue["Granny-Smith"].get_absolute_url()).content.decode())
        similar = similar[similar.index("vs-oscar-similar"):].split("</section>")[0]
        assert f'<p class="price_color">{shown}</p>' in similar
    assert shown == {"en": "€3.10", "de": "3,10\xa0€"}[language]


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_free_product_s_card_says_free_as_oscars_product_page_does(catalogue, client, settings, language):
    """Oscar's product page says "Free" for a price of 0; its cards read "0.00 EUR" (the JSON, the
    search page's and the script's cards) and "€0.00" (the similar products on a product page)."""
    from django.utils import translation

    settings.LANGUAGE_CODE = language
    milk = catalogue["Arla-Standard-Milk"]
    StockRecord.objects.filter(product=milk).update(price=Decimal("0.00"))
    with translation.override(language):
        free = translation.gettext("Free")
        page = client.get(milk.get_absolute_url()).content.decode()
        assert unescape(re.search(r'<p class="price_color">\s*(.*?)\s*</p>', page).group(1)) == free
        card = next(r for r in search(client, "Arla-Standard-Milk") if r["id"] == milk.pk)
        assert (card["price"], card["currency"]) == (free, None)
        results = client.post("/visual-search/", {"image": photo("Arla-Standard-Milk")}).content.decode()
        assert f'data-vs-field="price">{free}</span>' in results and "0.00 EUR" not in results  # (€0.00: the basket)
        similar = client.get(catalogue["Granny-Smith"].get_absolute_url()).content.decode()
        similar = similar[similar.index("vs-oscar-similar"):].split("</section>")[0]
        assert f'<p class="price_color">{free}</p>' in similar and "0.00" not in similar
    assert free == {"en": "Free", "de": "Kostenlos"}[language]


def test_the_search_page_sits_in_oscars_layout_with_one_heading(catalogue, client):
    response = client.get("/visual-search/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="breadcrumb"' in html and "navbar" in html  # Oscar's layout
    # The navbar's camera button keeps its own heading inside its closed dialog: not on the page.
    page = re.sub(r"<dialog.*?</dialog>", "", html, flags=re.S)
    assert len(re.findall(r"<h[1-6][^>]*>\s*Search by photo\s*</h[1-6]>", page)) == 1
    assert 'data-vs-widget' in html

    results = client.post("/visual-search/", {"image": photo("Banana")}).content.decode()
    results_page = re.sub(r"<dialog.*?</dialog>", "", results, flags=re.S)
    assert "Banana" in results and "2.25" in results and len(re.findall(r"<h[1-6][^>]*>\s*Search by photo", results_page)) == 1


def test_the_navbar_has_the_camera_button(catalogue, client):
    html = client.get("/catalogue/").content.decode()
    assert 'href="/visual-search/"' in html and "data-vs-open" in html and "<dialog" in html  # the compact widget


def test_the_product_page_shows_similar_products_with_prices(catalogue, client):
    html = client.get(catalogue["Arla-Standard-Milk"].get_absolute_url()).content.decode()
    similar = html[html.index("vs-oscar-similar"):]
    assert "Similar products" in similar and "Granny Smith" in similar and "€3.50" in similar
    assert "Oatly" not in similar and "Vanilla" not in similar


def test_the_look_alikes_ask_no_queries_per_card(catalogue, client, settings, tmp_path):
    """Oscar's card asks each product's class and whether it has options before its basket button:
    two queries a card, where Oscar's own lists fetch them with the products. The list now fetches
    them once for all its cards."""
    (tmp_path / "oscar" / "catalogue").mkdir(parents=True)
    (tmp_path / "oscar" / "catalogue" / "detail.html").write_text(
        '{% extends "oscar/catalogue/detail.html" %}{% load visual_search %}{% block product_info %}'
        '{% similar_products product limit=request.GET.n template="visual_search/oscar/similar_products.html" %}{% endblock %}'
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    # Standalone products' cards (a parent's asks its public variants' stock, as Oscar's card does).
    Product.objects.filter(pk=catalogue[PARENT].pk).update(is_public=False)
    url = catalogue["Granny-Smith"].get_absolute_url()
    counts = {}
    for n in (1, 2):
        client.get(f"{url}?n={n}")  # the session, the basket
        with CaptureQueriesContext(connection) as queries:
            html = client.get(f"{url}?n={n}").content.decode()
        assert html.count('<article class="product_pod">') == n
        counts[n] = len(queries)
    assert counts[2] == counts[1], counts


def test_a_parent_s_card_asks_no_queries_of_its_own(catalogue, rf):
    """Oscar prices a parent from its public variants' stock records, two queries, which Oscar's own
    card asks once (its stock line) and a look-alike's card asked twice (the result's price, then the
    stock line): 4 queries a parent's card. The list now fetches them once for all its cards, where
    Oscar's strategy reads them (get_public_children); a hidden variant's price still counts for nothing."""
    partner = StockRecord.objects.first().partner
    juice = Product.objects.create(title="Juice", product_class=catalogue[PARENT].product_class, structure=Product.PARENT)
    for title, price, public in (("Orange", "4.10", True), ("Unreleased", "1.00", False)):
        child = Product.objects.create(title=title, parent=juice, structure=Product.CHILD, is_public=public)
        StockRecord.objects.create(product=child, partner=partner, partner_sku=title, price=Decimal(price), num_in_stock=3)
    request = rf.get("/")
    request.user = AnonymousUser()
    request.strategy = Selector().strategy(request=request, user=request.user)

    def cards(parents):
        results = [SearchResult(Product.objects.get(pk=parent.pk), 0.5) for parent in parents]
        with CaptureQueriesContext(connection) as queries:
            items = describe(results, request)
            html = render_to_string("visual_search/oscar/similar_products.html", {"items": items, "request": request})
        return len(queries), items, html

    one, _, _ = cards([catalogue[PARENT]])
    two, items, html = cards([catalogue[PARENT], juice])
    assert two == one, (one, two)
    assert [item["price_display"] for item in items] == ["€9.95", "€4.10"] and html.count("€4.10") == 1
    assert html.count('class="available availability"') == 2


CARD_PARTS = ["image_container", "star-rating", "<h3", "product_price", "price_color", "availability", "<form", "add to"]


def cards(html: str, section_start: str) -> dict[str, str]:
    """{title: card HTML} of the product grid after ``section_start``."""
    section = html[html.index(section_start):].split("</ul>")[0]
    return {unescape(re.search(r'title="([^"]*)"', a).group(1)): a for a in section.split("<article")[1:]}


def shape(card: str) -> list[str]:
    """The parts of a card in order: what Oscar's grid (fixed height, price block at the foot) lays out."""
    return sorted((part for part in CARD_PARTS if part in card.lower()), key=card.lower().index)


def test_the_look_alikes_are_cards_as_oscars_own_with_stars_and_a_basket_button(catalogue, client):
    """Oscar's grid keeps room in a card for its stars and, at its foot, the basket button: the
    look-alikes had neither, and left a gap above their price. They are Oscar's cards now, part for
    part (a parent, sold through its variants, has no button there either), and the button works."""
    from django.test import Client

    granny = catalogue["Granny-Smith"]
    for rank, name in enumerate(["Banana", PARENT]):  # Oscar's own cards, on the same page
        granny.recommended_products.through.objects.create(primary=granny, recommendation=catalogue[name], ranking=rank)
    shopper = Client(enforce_csrf_checks=True)
    html = shopper.get(granny.get_absolute_url()).content.decode()
    ours, oscars = cards(html, "vs-oscar-similar"), cards(html, "Recommended items")
    for title in ("Banana", PARENT):
        assert shape(ours[title]) == shape(oscars[title]), title
    assert "<form" in ours["Banana"] and "<form" not in ours[PARENT]

    form = ours["Banana"]
    fields = dict(re.findall(r'<input type="(?:hidden|number)" name="([^"]+)" value="([^"]*)"', form))
    action = unescape(re.search(r'<form action="([^"]+)"', form).group(1))
    assert shopper.post(action, fields).status_code == 302
    basket = shopper.get("/basket/").content.decode()
    assert "Banana" in basket and "€2.25" in basket


def test_the_look_alikes_say_in_stock_as_oscars_cards_do(catalogue, client):
    """Oscar's cards say "In stock" (a parent: "Available"; none left: "Unavailable"); the look-alikes
    said "Available" for each. They say what Oscar's card says for the same product now."""
    granny = catalogue["Granny-Smith"]
    StockRecord.objects.filter(product=catalogue["Arla-Standard-Milk"]).update(num_in_stock=0)
    for rank, name in enumerate(["Banana", PARENT, "Arla-Standard-Milk"]):
        granny.recommended_products.through.objects.create(primary=granny, recommendation=catalogue[name], ranking=rank)
    html = client.get(granny.get_absolute_url()).content.decode()
    ours, oscars = cards(html, "vs-oscar-similar"), cards(html, "Recommended items")

    def availability(card: str) -> str:
        return " ".join(re.sub(r"<[^>]+>", "", re.search(r'<p class="[^"]*availability">(.*?)</p>', card, re.S).group(1)).split())

    assert [availability(ours[t]) for t in ("Banana", PARENT, "Arla Standard Milk")] == ["In stock", "Available", "Unavailable"]
    for title in ("Banana", PARENT, "Arla Standard Milk"):
        assert availability(ours[title]) == availability(oscars[title])


def test_the_similar_products_grid_works_under_a_strict_content_security_policy(catalogue, client):
    """Its pictures' height was a style attribute, which a CSP without 'unsafe-inline' drops (the
    package's other templates need none: docs/security.md); it is widget.css's, linked once."""
    html = client.get(catalogue["Arla-Standard-Milk"].get_absolute_url()).content.decode()
    section = re.search(r'<section class="vs-similar vs-oscar-similar".*?</section>', html, flags=re.S).group(0)
    assert "vs-oscar-thumbnail" in section and "style=" not in section
    assert html.count("visual_search/widget.css") == 1  # the navbar's camera linked it first, or the grid did


def test_a_hidden_variant_s_picture_never_shows_on_its_parent_s_card(catalogue, client):
    """A variant the shop hides (not public: an unreleased flavour) has its photo on its own image
    row, which stood for the parent: the parent's card showed it when it came first in the gallery's
    order, where Oscar's own pages never show it."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    ProductImage.objects.filter(product=parent).update(display_order=1)  # the variant's photo first

    def card() -> str:
        return next(r for r in search(client, "Arla-Natural-Yoghurt") if r["id"] == parent.pk)["image_url"]

    variants_picture = card()
    assert VARIANT in images([parent])[parent.pk].name  # a public variant's photo may stand for the family
    variant.is_public = False
    variant.save()
    assert VARIANT not in images([parent])[parent.pk].name
    assert card() != variants_picture


def _family_rows(parent) -> list[str]:
    """The source files of the rows that stand for ``parent`` (its own photo and its variants')."""
    return sorted(ImageEmbedding.objects.for_result(parent).values_list("source_name", flat=True))


def test_a_hidden_variant_s_photo_neither_finds_nor_shapes_its_parent(catalogue, client):
    """A variant the shop hides (an unreleased flavour) kept its photo in the index for its public
    parent: a customer's photo of it found the parent as an exact match, and its vector counted in
    the parent's look-alikes. Hiding it takes its photo out of search at the save; showing it again
    brings the photo back, with no reindex by hand."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    assert search(client, VARIANT)[0]["score"] == pytest.approx(1.0, abs=1e-3)
    own = object_vector(parent)

    variant.is_public = False
    variant.save()
    assert [name for name in _family_rows(parent) if VARIANT in name] == []
    found = [r for r in search(client, VARIANT) if r["id"] == parent.pk]
    # No exact match any more: at most a look-alike by the parent's own photo (another yoghurt).
    assert not found or found[0]["score"] != pytest.approx(1.0, abs=1e-3)
    hidden = object_vector(parent)  # the parent's prototype: its own photo only
    assert not np.allclose(hidden, own)
    assert np.allclose(hidden, object_vector(parent)) and len(_family_rows(parent)) == 1
    assert select_pks(registration_of_images(), ["missing"]) == []  # not "missing": left out

    variant.is_public = True
    variant.save()
    best = search(client, VARIANT)[0]
    assert best["id"] == parent.pk and best["score"] == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(object_vector(parent), own)


def test_a_variant_hidden_or_shown_without_a_save_is_caught_up_by_the_sweep(catalogue, client):
    """``QuerySet.update()`` sends no signal: the sweep drops the hidden variant's rows, and indexes
    its photo again once it is public."""
    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    Product.objects.filter(pk=variant.pk).update(is_public=False)
    sweep(older_than=0)
    assert [name for name in _family_rows(parent) if VARIANT in name] == []

    Product.objects.filter(pk=variant.pk).update(is_public=True)
    sweep(older_than=0)
    best = search(client, VARIANT)[0]
    assert best["id"] == parent.pk and best["score"] == pytest.approx(1.0, abs=1e-3)


def test_a_hidden_standalone_product_stays_indexed(catalogue):
    """Only a hidden variant leaves search: a hidden standalone product keeps its rows (VISIBILITY
    hides it at every search, so publishing it shows it at once)."""
    assert ImageEmbedding.objects.for_result(catalogue[HIDDEN]).ready(current_fingerprint()).count() == 1


def test_a_variant_moved_to_another_parent_stands_for_it(catalogue, client):
    """A variant's rows stood for the parent it had when its image was saved: moved to another
    parent, its photo kept finding the old one."""
    old, variant = catalogue[PARENT], catalogue[VARIANT]
    new = Product.objects.create(title="Flavoured yoghurt", product_class=old.product_class, structure=Product.PARENT)
    variant.parent = new
    variant.save()
    assert [name for name in _family_rows(old) if VARIANT in name] == []
    assert [name for name in _family_rows(new) if VARIANT in name] != []
    assert search(client, VARIANT)[0]["id"] == new.pk


def test_hidden_products_and_variants_shape_no_version(catalogue):
    """``visual_search_train`` and the int8 calibration read every product image, a hidden product's
    and a hidden variant's too: what customers never see shaped what they search with."""
    from visual_search.training.dataset import shop_items

    parent, variant = catalogue[PARENT], catalogue[VARIANT]
    Product.objects.filter(pk=variant.pk).update(is_public=False)
    trained = sorted((item.product, item.object_id) for item in shop_items())
    shown = ProductImage.objects.exclude(product__in=[catalogue[HIDDEN], variant])
    assert trained == sorted((str(image.product.parent_id or image.product_id), str(image.pk)) for image in shown)
    assert [p for p, _ in trained].count(str(parent.pk)) == 1  # the parent's own photo, not the hidden flavour's
