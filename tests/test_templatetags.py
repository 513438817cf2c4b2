"""The widget, the server-rendered search page (JavaScript off) and {% similar_products %}."""

import logging
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import catalogue_image, render_tags
from tests.testapp.models import Product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]


@pytest.fixture
def shop(make_product):
    return {
        name: make_product(name.replace("-", " "), catalogue_image(name), category=category)
        for name, category in [("Arla-Standard-Milk", "milk"), ("Oatly-Oat-Milk", "milk"), ("Granny-Smith", "apple"), ("Pink-Lady", "apple")]
    }


def test_widget_is_an_accessible_form_that_works_without_javascript(rf):
    request = rf.get("/")
    html = render_tags("{% visual_search_widget category='milk' color='red' %}", request=request, csrf_token="tok")
    assert 'method="post"' in html and 'enctype="multipart/form-data"' in html
    assert 'action="/search-by-photo/"' in html
    assert 'data-api-url="/api/visual-search/search/"' in html
    assert 'accept="image/*"' in html and 'capture="environment"' in html
    assert '<label class="vs-button" for="vs-file">' in html
    assert 'aria-live="polite"' in html
    assert '<input type="hidden" name="category" value="milk">' in html
    assert 'name="color"' not in html  # not an allowed filter
    assert 'value="tok"' in html
    assert "visual_search/widget.js" in html and "visual_search/widget.css" in html


@pytest.mark.parametrize(
    ("csrf", "cookie"),
    [({}, "csrftoken"), ({"CSRF_COOKIE_NAME": "shop_csrf"}, "shop_csrf"), ({"CSRF_COOKIE_HTTPONLY": True}, ""), ({"CSRF_USE_SESSIONS": True}, "")],
)
def test_widget_names_the_csrf_cookie_its_script_may_read(rf, settings, csrf, cookie):
    """The script sends the cookie's current token (the page's goes stale at sign-in); where the
    cookie cannot be read it is told none, and uses the page's (tests/test_browser.py)."""
    for name, value in csrf.items():
        setattr(settings, name, value)
    assert f'data-csrf-cookie="{cookie}"' in render_tags("{% visual_search_widget %}", request=rf.get("/"))


def test_widget_without_camera(rf):
    assert "capture=" not in render_tags("{% visual_search_widget camera=False %}", request=rf.get("/"))


def test_search_page_renders_results_server_side(client, shop):
    page = client.get("/search-by-photo/")
    assert page.status_code == 200 and b"Search by photo" in page.content
    photo = SimpleUploadedFile("milk.jpg", catalogue_image("Oatly-Oat-Milk").read_bytes(), content_type="image/jpeg")
    response = client.post("/search-by-photo/", {"image": photo, "category": "milk"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "2 results, best match first." in html
    assert html.index("Oatly Oat Milk") < html.index("Arla Standard Milk")
    assert "Granny Smith" not in html
    assert f'/products/{shop["Oatly-Oat-Milk"].pk}/"' in html  # relative or absolute


def test_search_page_shows_errors_with_their_status(client, shop):
    response = client.post("/search-by-photo/", {"image": SimpleUploadedFile("x.jpg", b"<html></html>")})
    assert response.status_code == 400
    assert "not an image" in response.content.decode()
    assert client.post("/search-by-photo/", {}).status_code == 400


def test_search_page_is_throttled_too(client, shop, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    photo = catalogue_image("Pink-Lady").read_bytes()
    assert client.post("/search-by-photo/", {"image": SimpleUploadedFile("a.jpg", photo)}).status_code == 200
    response = client.post("/search-by-photo/", {"image": SimpleUploadedFile("a.jpg", photo)})
    assert response.status_code == 429 and "Too many searches" in response.content.decode()


def test_similar_products_renders_cards_without_itself(shop, rf):
    product = shop["Arla-Standard-Milk"]
    html = render_tags("{% similar_products product limit=2 %}", product=product, request=rf.get("/"))
    assert "Similar products" in html
    assert html.count('class="vs-card"') == 2
    assert "Arla Standard Milk" not in html
    # A score is the chance that a result is the product in a customer's photo; look-alikes of a
    # product are other products by design, so their cards say nothing of a match.
    assert "vs-card-score" not in html and "match" not in html


def test_two_similar_lists_on_a_page_have_their_own_heading_ids(shop, rf):
    """Both were "vs-similar-title": aria-labelledby of the second named the first's heading."""
    html = render_tags("{% similar_products a limit=1 %}{% similar_products b limit=1 %}",
                  a=shop["Arla-Standard-Milk"], b=shop["Pink-Lady"], request=rf.get("/"))
    assert re.findall(r'<h2 id="([^"]+)"', html) == ["vs-similar-title", "vs-similar-title-2"]
    assert re.findall(r'aria-labelledby="([^"]+)"', html) == ["vs-similar-title", "vs-similar-title-2"]


STYLESHEET = '<link rel="stylesheet" href="/static/visual_search/widget.css">'


@pytest.mark.parametrize("with_request", [True, False])
def test_a_page_links_widget_css_once(shop, rf, with_request):
    """A product page with the navbar's widget and the similar products list linked widget.css
    twice (a second widget, a second list: once more each). Each still links it alone."""
    def page(source):  # one page: its own request
        return render_tags(source, product=shop["Arla-Standard-Milk"], **({"request": rf.get("/")} if with_request else {}))

    for source in ['{% visual_search_widget mode="compact" %}', "{% similar_products product limit=2 %}"]:
        assert page(source).count("widget.css") == 1
    both = page('{% visual_search_widget mode="compact" %}{% similar_products product limit=2 %}'
                "{% visual_search_widget %}{% similar_products product limit=1 %}")
    assert both.count("widget.css") == 1 and both.index(STYLESHEET) < both.index("vs-widget")
    assert both.count('<section class="vs-similar"') == 2


def test_a_layout_s_head_links_widget_css_for_the_whole_page(shop, rf):
    """{% visual_search_stylesheet %} in a layout's <head>, as the search page's base.html has it:
    the widgets and lists below it, in the same template or another of the response, link none."""
    request = rf.get("/")
    head = render_tags("<head>{% visual_search_stylesheet %}</head>{% visual_search_widget %}", request=request)
    body = render_tags("{% similar_products product limit=2 %}", product=shop["Pink-Lady"], request=request)
    assert head.count("widget.css") == 1 and head.index(STYLESHEET) < head.index("</head>")
    assert "widget.css" not in body and 'class="vs-card"' in body
    # A list with nothing to show, or given as a variable, links nothing: the widget after it does.
    html = render_tags("{% similar_products product limit=2 as similar %}{% visual_search_widget %}",
                  product=shop["Pink-Lady"], request=rf.get("/"))
    assert html.count(STYLESHEET) == 1


SCRIPT = '<script src="/static/visual_search/widget.js" defer></script>'


@pytest.mark.parametrize("with_request", [True, False])
def test_a_page_links_widget_js_once(shop, rf, with_request):
    """A page with several widgets (the navbar's, the page's own) had a <script> of widget.js per
    widget, the one script that sets itself up once. The first widget links it, the others none; a
    layout's {% visual_search_script %} links it for the page."""
    def page(source, request=None):  # one page: its own request
        return render_tags(source, **({"request": request or rf.get("/")} if with_request else {}))

    assert page("{% visual_search_widget %}").count(SCRIPT) == 1
    three = page('{% visual_search_widget mode="compact" %}{% visual_search_widget %}{% visual_search_widget %}')
    assert three.count("widget.js") == 1 and three.count('data-vs-widget ') == 3
    assert three.index('data-vs-widget ') < three.index(SCRIPT)  # after the first widget, as before
    head = page("<head>{% visual_search_script %}</head>{% visual_search_widget %}{% visual_search_widget %}")
    assert head.count("widget.js") == 1 and head.index(SCRIPT) < head.index("</head>")
    # A widget added later (htmx fetching a fragment: a request of its own) brings its script: it starts.
    assert page("{% visual_search_widget %}").count(SCRIPT) == 1


def test_the_search_page_links_widget_css_once(client):
    page = client.get("/search-by-photo/").content.decode()
    assert page.count("widget.css") == 1 and page.index(STYLESHEET) < page.index("</head>")


def test_similar_products_without_its_heading_under_the_page_s_own(shop, rf):
    """A page that writes its own heading above the list showed two ("You may also like", then
    "Similar products"): heading=False leaves the list's out and names the section for screen readers."""
    html = render_tags("<h2>You may also like</h2>{% similar_products product limit=2 heading=False %}",
                  product=shop["Arla-Standard-Milk"], request=rf.get("/"))
    assert html.count("<h2") == 1 and 'aria-label="Similar products"' in html and "aria-labelledby" not in html
    assert html.count('class="vs-card"') == 2


def test_similar_products_queryset_and_as_forms(shop):
    product = shop["Arla-Standard-Milk"]
    milk = Product.objects.filter(category="milk")
    html = render_tags(
        "{% similar_products product limit=4 queryset=milk as similar %}{% for item in similar %}[{{ item.name }}]{% endfor %}",
        product=product,
        milk=milk,
    )
    assert html == "[Oatly Oat Milk]"


def test_the_as_form_gives_the_keys_customers_md_lists(shop):
    # customers.md listed six keys (object, id, name, url, image_url, score); a template looking
    # for the probability or the adapter's price found them only by reading the code.
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "customers.md").read_text()
    listed = re.search(r"puts the list of results \(dicts with (.*?)\)", text, re.S).group(1)
    names = re.findall(r"`(\w+)`", listed)
    html = render_tags(
        "{% similar_products product limit=1 as similar %}{% for item in similar %}{{ item.keys|join:',' }}{% endfor %}",
        product=shop["Arla-Standard-Milk"],
    )
    assert sorted(html.split(",")) == sorted(names)


def test_similar_products_without_embedding_renders_nothing_and_logs(db, caplog):
    product = Product.objects.create(name="New, no photo")
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert render_tags("{% similar_products product %}", product=product).strip() == ""
    assert any("no ready image embedding" in r.getMessage() for r in caplog.records)


def test_similar_products_on_an_empty_index_renders_nothing(make_product):
    product = make_product("Alone", catalogue_image("Pink-Lady"))
    assert render_tags("{% similar_products product %}", product=product).strip() == ""


def test_similar_products_never_breaks_the_page(shop, monkeypatch, caplog):
    import visual_search.search

    def broken(*args, **kwargs):
        raise RuntimeError("index unreachable")

    monkeypatch.setattr(visual_search.search, "find_similar", broken)
    with caplog.at_level(logging.ERROR, logger="visual_search"):
        html = render_tags("before{% similar_products product %}after", product=shop["Pink-Lady"])
    assert "".join(html.split()) == "beforeafter"
    assert any(r.name == "visual_search" and r.exc_info for r in caplog.records)
    assert render_tags("{% similar_products missing %}x").strip() == "x"


def test_templates_are_overridable(shop, settings, tmp_path):
    (tmp_path / "visual_search").mkdir()
    (tmp_path / "visual_search" / "similar_products.html").write_text("{% for item in items %}<{{ item.name }}>{% endfor %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    html = render_tags("{% similar_products product limit=1 %}", product=shop["Granny-Smith"])
    assert html.startswith("<") and html.endswith(">") and "vs-card" not in html


@pytest.mark.parametrize("source, words", [
    ("{% similar_products %}", "did not receive value(s) for the argument(s): 'obj'"),
    ("{% similar_products product colour='red' %}", "unexpected keyword argument 'colour'"),
    ("{% similar_products product 4 limit=2 %}", "multiple values for keyword argument 'limit'"),
    ("{% similar_products limit=2 product %}", "positional argument(s) after some keyword argument(s)"),
    ("{% similar_products a b c d e f %}", "too many positional arguments"),
])
def test_similar_products_says_what_is_wrong_with_its_arguments(source, words):
    from django.template import TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match=re.escape(words)):
        render_tags(source)


def test_similar_products_takes_its_arguments_by_keyword_too(shop, rf):
    product = shop["Oatly-Oat-Milk"]
    by_position = render_tags("{% similar_products product 2 as similar %}{{ similar|length }}", product=product)
    by_keyword = render_tags("{% similar_products obj=product limit=2 as similar %}{{ similar|length }}", product=product)
    assert by_position.strip() == by_keyword.strip() == "2"
