"""A shop's rule for what customers may see (VISIBILITY) holds on every path that shows results."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import Context, Template

import visual_search
from tests.conftest import catalogue_image
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Arla-Standard-Milk", "Oatly-Oat-Milk", "Granny-Smith", "Pink-Lady", "Banana"]
HIDDEN = "Oatly-Oat-Milk"


@pytest.fixture
def shop(make_product, settings):
    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.in_stock", "SEARCH_THROTTLE_RATE": None,
    }
    cache.clear()
    made = {name: make_product(name.replace("-", " "), catalogue_image(name)) for name in NAMES}
    Product.objects.filter(pk=made[HIDDEN].pk).update(in_stock=False)
    return made


def photo(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{name}.jpg", catalogue_image(name).read_bytes(), "image/jpeg")


def names(results) -> list[str]:
    return [r["name"] if isinstance(r, dict) else r.object.name for r in results]


def test_search_by_photo_never_shows_a_hidden_product(shop, client):
    found = client.post("/api/visual-search/search/", {"image": photo(HIDDEN)}).json()["results"]
    assert "Oatly Oat Milk" not in names(found) and len(found) == len(NAMES) - 1
    page = client.post("/search-by-photo/", {"image": photo(HIDDEN)}).content.decode()
    assert "Oatly Oat Milk" not in page and "Arla Standard Milk" in page


def test_a_hidden_product_s_photo_makes_no_other_product_likelier(shop, client, settings):
    """The scores a customer reads are the chances the whole catalogue gives: the photo of a hidden
    product keeps that product's share out of view instead of handing it to a wrong one (which read
    "confident" at 0.50 where the hidden product itself scored 0.94)."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SCORE": "probability"}
    shown = client.post("/api/visual-search/search/", {"image": photo(HIDDEN)}).json()
    everyone = {r.object.name: r.score for r in visual_search.search_by_image(catalogue_image(HIDDEN).read_bytes(), Product)}
    assert everyone["Oatly Oat Milk"] == max(everyone.values())
    assert {r["name"]: r["score"] for r in shown["results"]} == pytest.approx({n: p for n, p in everyone.items() if n != "Oatly Oat Milk"}, abs=1e-5)


def test_a_hidden_product_has_no_similar_page_and_is_never_similar(shop, client):
    hidden = client.get(f"/api/visual-search/products/{shop[HIDDEN].pk}/similar/")
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    similar = client.get(f"/api/visual-search/products/{shop['Arla-Standard-Milk'].pk}/similar/").json()["results"]
    assert "Oatly Oat Milk" not in names(similar) and len(similar) == len(NAMES) - 2


def test_similar_products_tag_leaves_hidden_products_out(shop, rf):
    template = Template("{% load visual_search %}{% similar_products product limit=10 as similar %}{% for i in similar %}[{{ i.name }}]{% endfor %}")
    html = template.render(Context({"product": shop["Arla-Standard-Milk"], "request": rf.get("/")}))
    assert "[Oatly Oat Milk]" not in html and "[Banana]" in html


def test_the_python_api_applies_the_rule_when_given_the_request(shop, rf):
    data = catalogue_image(HIDDEN).read_bytes()
    assert "Oatly Oat Milk" in names(visual_search.search_by_image(data, Product))  # shop code sees everything
    assert "Oatly Oat Milk" not in names(visual_search.search_by_image(data, Product, request=rf.get("/")))
    similar = visual_search.find_similar(shop["Arla-Standard-Milk"], request=rf.get("/"))
    assert "Oatly Oat Milk" not in names(similar)


def test_hidden_right_after_it_is_hidden(shop, client):
    url = "/api/visual-search/search/"
    assert "Banana" in names(client.post(url, {"image": photo("Banana")}).json()["results"])
    Product.objects.filter(pk=shop["Banana"].pk).update(in_stock=False)  # no reindex, no wait
    assert "Banana" not in names(client.post(url, {"image": photo("Banana")}).json()["results"])
    assert client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/").status_code == 404


def test_a_rule_that_does_not_import_is_a_system_check_error(settings):
    from visual_search.checks import check_settings

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.nowhere.rule"}
    assert [m.id for m in check_settings()] == ["visual_search.E023"]


def test_a_rule_that_cannot_take_model_and_request_is_a_system_check_error(settings):
    from visual_search.checks import check_settings

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.one_argument"}
    [message] = check_settings()
    assert message.id == "visual_search.E023" and "cannot be called as rule(model, request)" in message.msg


@pytest.mark.parametrize(("path", "says"), [
    # The module alone: Django's words were 'Module "tests.testapp" does not define a "visibility" attribute/class'.
    ("tests.testapp.visibility", "names a module, not a function in it"),
    ("tests.testapp.visibility.in_stok", "did you mean 'tests.testapp.visibility.in_stock'?"),
    # A class takes any arguments; called, it made a model instance, and every search answered 503.
    ("tests.testapp.models.Product", "is a class"),
])
def test_a_rule_path_that_misses_the_function_says_which_to_name(settings, path, says):
    from visual_search.checks import check_settings

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": path}
    [message] = check_settings()
    assert message.id == "visual_search.E023" and says in message.msg
    if path == "tests.testapp.visibility":
        assert "'tests.testapp.visibility.in_stock'" in message.hint


def test_a_gallery_registered_without_its_result_fails_the_rule_at_check_time(settings):
    """"MODELS": ["testapp.ProductImage"] passed every check; then the shop's rule (a filter on the
    product's fields) raised FieldError at every search, which answered 503 to every customer."""
    from visual_search.checks import check_settings

    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH, "MODELS": ["testapp.ProductImage"], "VISIBILITY": "tests.testapp.visibility.in_stock",
    }
    [message] = check_settings()
    assert message.id == "visual_search.E023"
    assert "fails for testapp.ProductImage, which searches return: Cannot resolve keyword 'in_stock'" in message.msg
    assert "register {'model': 'testapp.ProductImage', 'image_field': 'image', 'result': 'product'}" in message.hint


@pytest.mark.parametrize("rule", ["takes_a_queryset", "forgets_to_return"])
def test_a_rule_that_fails_shows_customers_nothing_and_says_why_in_the_log(shop, client, settings, caplog, rule):
    """No 500 page and nothing hidden shown: 503 "unavailable" everywhere, the log names the rule's fault."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": f"tests.testapp.visibility.{rule}"}
    response = client.post("/api/visual-search/search/", {"image": photo("Banana")})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    assert "is called as rule(model, request)" in caplog.text and f"visibility.{rule}" in caplog.text
    assert client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/").status_code == 503
    page = client.post("/search-by-photo/", {"image": photo("Banana")})
    assert page.status_code == 503 and b"Banana" not in page.content
    with pytest.raises(visual_search.registry.VisibilityRuleError, match="returns a QuerySet of that model"):
        visual_search.search_by_image(catalogue_image("Banana").read_bytes(), Product, request=object())
    # The template tag shows nothing rather than break the page.
    html = Template("{% load visual_search %}{% similar_products product as similar %}{{ similar|length }}").render(
        Context({"product": shop["Banana"], "request": None}))
    assert html.strip() == "0"


def test_a_rule_that_joins_finds_a_product_listed_twice(shop, client, settings):
    """A rule over a relation (products with a gallery photo, with stock in a store) lists a product
    once per related row: its similar endpoint answered 500 (MultipleObjectsReturned) for a product
    with two, while the search by photo showed it."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.with_gallery"}
    for product, copies in ((shop["Banana"], 2), (shop["Granny-Smith"], 1)):
        for n in range(copies):
            product.images.create(image=SimpleUploadedFile(f"b{n}.jpg", catalogue_image("Banana").read_bytes()))
    response = client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/")
    assert response.status_code == 200 and names(response.json()["results"]) == ["Granny Smith"]
    assert client.get(f"/api/visual-search/products/{shop['Pink-Lady'].pk}/similar/").status_code == 404
