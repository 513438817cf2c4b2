"""The widget's two modes, its ids, where server-rendered results go, its words and its cards.

HTML only (no browser): tests/test_browser.py drives the same templates in Chromium.
"""

import logging
import re
from collections import Counter
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape

from tests.conftest import catalogue_image, render_tags
from visual_search.photo_search import PhotoSearchError
from visual_search.widget import ERROR_KEY, RESULTS_KEY, WIDGET_KEY, customer_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]

# A shop layout with django-oscar's block names and a widget of each mode in its navbar.
SHOP_LAYOUT = """{% load visual_search %}<html><head><title>{% block title %}Shop{% endblock %}</title></head>
<body><nav class="navbar">{% visual_search_widget mode="compact" %}{% visual_search_widget %}</nav>
{% block header %}<div class="page-header"><h1>{% block headertext %}{% endblock %}</h1></div>{% endblock %}
<div id="content_inner">{% block content %}{% endblock %}</div></body></html>"""


@pytest.fixture
def shop(make_product):
    for name, category in [("Oatly-Oat-Milk", "milk"), ("Arla-Standard-Milk", "milk"), ("Pink-Lady", "apple")]:
        make_product(name.replace("-", " "), catalogue_image(name), category=category)


@pytest.fixture
def shop_layout(settings, tmp_path):
    """The shop's own layout: visual_search/base.html extends it, as the docs tell shops to do."""
    (tmp_path / "visual_search").mkdir()
    (tmp_path / "layout.html").write_text(SHOP_LAYOUT)
    (tmp_path / "visual_search" / "base.html").write_text('{% extends "layout.html" %}')
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]


class Elements(HTMLParser):
    """Every start tag's attributes, in order; the ids, and what each label points at."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    @property
    def ids(self) -> list[str]:
        return [attrs["id"] for _, attrs in self.tags if "id" in attrs]

    @property
    def label_targets(self) -> list[str]:
        return [attrs["for"] for tag, attrs in self.tags if tag == "label"]


def widgets(html: str) -> list[str]:
    """The HTML of each widget on the page, in order."""
    parts = html.split("data-vs-widget")[1:]
    return [part.split("</template>")[0] for part in parts]


def assert_ids_unique_and_labels_bound(html: str) -> list[str]:
    page = Elements(html)
    doubles = [name for name, count in Counter(page.ids).items() if count > 1]
    assert doubles == [], doubles
    assert page.label_targets and set(page.label_targets) <= set(page.ids)
    return page.ids


def test_default_is_the_inline_widget_as_before(rf):
    html = render_tags("{% visual_search_widget %}", request=rf.get("/"))
    assert 'data-vs-mode="inline"' in html and "<dialog" not in html
    assert '<label class="vs-button" for="vs-file">' in html and 'id="vs-title"' in html


def test_compact_mode_is_a_link_to_the_search_page_that_opens_a_dialog(rf):
    html = render_tags('{% visual_search_widget mode="compact" label="Find it by photo" %}', request=rf.get("/"))
    assert 'data-vs-mode="compact"' in html
    assert '<a class="vs-open" href="/search-by-photo/"' in html  # what it is without JavaScript
    assert '<span class="vs-open-label">Find it by photo</span>' in html  # its accessible name
    assert '<dialog class="vs-dialog" id="vs-compact-dialog" aria-labelledby="vs-compact-title"' in html
    assert 'aria-label="Close"' in html
    # The results live inside the dialog, which waits in a <template> for the script: there its form
    # stays its own when the button sits inside the shop's search form (tests/test_browser.py).
    assert html.index("<template data-vs-dialog-template>") < html.index("<dialog") < html.index("<form")
    assert html.index("<dialog") < html.index("data-vs-results") < html.index("</dialog>") < html.rindex("</template>")
    assert_ids_unique_and_labels_bound(html)


def test_unknown_mode_warns_and_falls_back_to_inline(rf, caplog):
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        html = render_tags('{% visual_search_widget mode="popup" %}', request=rf.get("/"))
    assert 'data-vs-mode="inline"' in html
    assert any("unknown mode 'popup'" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("with_request", [True, False])
def test_widgets_on_one_page_never_share_an_id(rf, with_request):
    source = '{% visual_search_widget %}{% visual_search_widget %}{% visual_search_widget mode="compact" %}{% visual_search_widget widget_id="aisle" %}{% visual_search_widget widget_id="aisle" %}'
    html = render_tags(source, request=rf.get("/")) if with_request else render_tags(source)
    ids = assert_ids_unique_and_labels_bound(html)
    assert {"vs", "vs-2", "vs-compact", "aisle", "aisle-2"} <= set(ids)
    assert {"vs-file", "vs-2-file", "vs-compact-file", "aisle-file", "aisle-2-file"} <= set(ids)


def test_a_layout_and_a_page_rendered_for_one_request_never_share_an_id(rf):
    """The navbar's widget and the page's are rendered by different templates of one response."""
    request = rf.get("/")
    navbar = render_tags("{% visual_search_widget %}", request=request)
    page = render_tags("{% visual_search_widget %}", request=request)
    assert_ids_unique_and_labels_bound(navbar + page)


def test_server_results_appear_only_in_the_widget_that_searched(rf):
    items = [{"name": "Oatly Oat Milk", "url": "/p/1/", "image_url": None, "score": 0.9}]
    source = '{% visual_search_widget %}{% visual_search_widget %}{% visual_search_widget mode="compact" %}'
    for posted, expected in [("vs-2", [False, True, False]), ("vs-compact", [False, False, True]), (None, [True, False, False])]:
        html = render_tags(source, request=rf.get("/"), **{RESULTS_KEY: items, WIDGET_KEY: posted})
        assert ["Oatly Oat Milk" in part for part in widgets(html)] == expected, posted


def test_after_a_search_without_the_script_the_results_come_before_the_form(rf):
    # The server's answer (no JavaScript) showed the photo's form again on top, its results under
    # it: on a phone they began below the screen, and a screen reader or the keyboard went through
    # the form first. Now the status line and the cards come first, the form for another photo
    # below them; before a search, and with an error, the widget is as the script knows it.
    items = [{"name": "Oatly Oat Milk", "url": "/p/1/", "image_url": None, "score": 0.9}]
    html = render_tags("{% visual_search_widget %}", request=rf.get("/"), **{RESULTS_KEY: items})
    assert html.index("data-vs-status") < html.index("data-vs-results") < html.index("Oatly Oat Milk") < html.index("<form")
    assert html.count("data-vs-status") == 1 and html.count("data-vs-results") == 1
    assert_ids_unique_and_labels_bound(html)
    for context in ({}, {ERROR_KEY: "Choose a photo first."}):
        html = render_tags("{% visual_search_widget %}", request=rf.get("/"), **context)
        assert html.index("<form") < html.index("data-vs-status") < html.index("</form>") < html.index("data-vs-results")


def test_the_search_page_in_a_shop_layout(client, shop, shop_layout):
    """Heading once (the layout's headertext), distinct ids, results only where the search came from."""
    page = client.get("/search-by-photo/").content.decode()
    assert page.count("Search by photo</h1>") == 1 and '<h2 class="vs-title"' not in page.split("</nav>")[1]
    ids = assert_ids_unique_and_labels_bound(page)
    assert ids.index("vs-compact") < ids.index("vs") < ids.index("vs-2")  # navbar, navbar, page

    def search(posted: str | None) -> list[bool]:
        photo = SimpleUploadedFile("milk.jpg", catalogue_image("Oatly-Oat-Milk").read_bytes(), content_type="image/jpeg")
        data = {"image": photo, **({"vs_widget": posted} if posted else {})}
        html = client.post("/search-by-photo/", data).content.decode()
        assert_ids_unique_and_labels_bound(html)
        return ["data-vs-list" in part for part in widgets(html)]

    assert search("vs-2") == [False, False, True]  # the page's widget
    assert search("vs") == [False, True, False]  # the navbar's inline widget
    assert search("aisle") == [False, False, True]  # a widget of another page: the page's own (main=True)


def test_a_throttled_search_answers_in_the_widget_that_searched(client, shop, shop_layout, settings):
    """"Too many searches" shows where the customer pressed Search (the navbar's compact widget's
    dialog), not in the page's inline widgets only: the posted widget is read before the throttle
    refuses."""
    from django.core.cache import cache

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    cache.clear()
    try:
        for expected in (200, 429):
            photo = SimpleUploadedFile("milk.jpg", catalogue_image("Oatly-Oat-Milk").read_bytes(), content_type="image/jpeg")
            response = client.post("/search-by-photo/", {"image": photo, "vs_widget": "vs-compact"})
            assert response.status_code == expected
        parts = widgets(re.sub(r'data-vs-messages="[^"]*"', "", response.content.decode()))
        assert "Too many searches" in parts[0] and "Too many searches" not in parts[1]  # the compact one only
    finally:
        cache.clear()


def test_the_plain_search_page_has_one_heading_and_its_css(client):
    page = client.get("/search-by-photo/").content.decode()
    assert page.count("<h1") == 1 and '<h2 class="vs-title"' not in page
    assert '<body class="vs-page">' in page and "visual_search/widget.css" in page.split("</head>")[0]


def test_one_status_line_says_what_the_results_are(client, shop, settings):
    # Three look-alike products under the tests' tiny network: no match is confident by the scores.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "CONFIDENT_SCORE": 0.0}
    photo = SimpleUploadedFile("milk.jpg", catalogue_image("Oatly-Oat-Milk").read_bytes(), content_type="image/jpeg")
    html = client.post("/search-by-photo/", {"image": photo, "category": "milk"}).content.decode()
    shown = re.sub(r'data-vs-messages="[^"]*"', "", html)  # the script's words for every count are not shown
    body = shown.split("</head>", 1)[1]  # the page's title says it too (below)
    assert body.count("best match first") == 1 and "results found" not in html
    status = html.split('data-vs-status role="status" aria-live="polite">')[1].split("</p>")[0]
    assert status == "<span>2 results, best match first.</span>"
    # The new page's title says it first: a screen reader read "Search by photo" and the form again.
    assert "<title>2 results, best match first. – Search by photo</title>" in html
    assert "<title>Search by photo</title>" in client.get("/search-by-photo/").content.decode()  # nothing searched


@pytest.mark.parametrize(
    "data, status, words, not_words",
    [
        ({}, 400, "Choose a photo first.", "form field"),
        ({"image": "html", "limit": "99999"}, 400, "This search form does not work right now.", "limit must be"),
        ({"image": "html"}, 400, "That file is not an image we can read. Choose a JPEG, PNG or WebP photo.", "send a"),
        ({"image": "svg"}, 415, "SVG files are not accepted here. Choose a JPEG, PNG or WebP photo.", "drawings"),
    ],
)
def test_the_page_speaks_to_customers(client, shop, data, status, words, not_words):
    if data.get("image") == "html":
        data = {**data, "image": SimpleUploadedFile("x.jpg", b"<html></html>")}
    if data.get("image") == "svg":
        data = {**data, "image": SimpleUploadedFile("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')}
    response = client.post("/search-by-photo/", data)
    html = response.content.decode()
    assert response.status_code == status
    assert f'<span class="vs-error">{words}' in html and not_words not in html
    assert re.search(f"<title>{re.escape(words)}[^<]* – Search by photo</title>", html)  # said first as the page loads


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_a_truncated_jpeg_is_worded_alike_by_the_page_and_the_api(client, shop, settings, language):
    """The API said "damaged or truncated", the page "not an image we can read. Choose a JPEG...",
    sending the customer after another format for a photo that only needs saving again. Both say
    the reason, in the customer's language; the API's ``reason`` tells the widget to show it too."""
    from django.utils import translation

    from visual_search import reasons

    settings.LANGUAGE_CODE = language
    truncated = catalogue_image("Banana").read_bytes()[:400]
    with translation.override(language):
        expected = translation.gettext(reasons.HEADER_UNREADABLE)
    api = client.post("/api/visual-search/search/", {"image": SimpleUploadedFile("t.jpg", truncated, "image/jpeg")})
    page = client.post("/search-by-photo/", {"image": SimpleUploadedFile("t.jpg", truncated, "image/jpeg")})
    assert api.status_code == page.status_code == 400
    assert api.json() == {"detail": expected, "code": "invalid_image", "reason": "damaged"}
    assert f'<span class="vs-error">{escape(expected)}</span>' in page.content.decode()


@pytest.mark.parametrize(
    "code, retry_after, language, words",
    [
        ("throttled", 1, "en", "Too many searches in a short time. Please try again in 1 second."),
        ("throttled", 30, "de", "Zu viele Suchanfragen in kurzer Zeit. Bitte versuchen Sie es in 30 Sekunden erneut."),
        ("unavailable", 10, "fr", "La recherche par photo n’est pas disponible pour le moment. Veuillez réessayer dans 10 secondes."),
        ("unavailable", None, "en", "Search by photo is not available right now. Please try again later."),
        ("throttled", None, "en", "Too many searches in a short time. Please wait a minute and try again."),
    ],
)
def test_a_passing_failure_tells_the_page_when_to_try_again(code, retry_after, language, words):
    """The page's words for a 429 or 503: "in N seconds" (in the plural form of the page's language)
    when the answer knew when, "later" when it did not."""
    with translation.override(language):
        assert customer_message(PhotoSearchError(503, code, "the API's detail", retry_after)) == words


def test_the_api_keeps_its_own_error_text(client, shop):
    body = client.post("/api/visual-search/search/", {}).json()
    assert body["code"] == "required" and "'image'" in body["detail"]  # the page maps the code, the API stays


def test_the_script_gets_the_same_words(rf):
    html = render_tags("{% visual_search_widget %}", request=rf.get("/"))
    assert "data-vs-messages=" in html and "&quot;required&quot;: &quot;Choose a photo first.&quot;" in html


def shown_text(html: str) -> str:
    """The card's text, less the elements marked ``hidden``."""
    return "".join(part.split(">", 1)[1] for part in html.split("<span")[1:] if " hidden>" not in part.split(">", 1)[0] + ">")


@pytest.mark.parametrize(
    "item, shown, not_shown",
    [
        ({"price": "12.90", "currency": "SEK", "available": False}, ["12.90 SEK", "Out of stock"], []),
        ({"price": "12.90", "available": True}, ["12.90<"], ["Out of stock"]),
        ({}, [], ["Out of stock", "None"]),
    ],
)
def test_cards_show_price_and_stock_when_the_result_has_them(item, shown, not_shown):
    html = render_to_string("visual_search/result_card.html", {"item": {"name": "Milk", "url": "/m/", "score": 0.5, **item}})
    text = shown_text(html)
    assert all(words in text for words in shown), text
    assert not any(words in text for words in not_shown), text
    if "price" not in item:
        assert 'data-vs-field="price" hidden' in html


def test_numbers_the_script_and_the_server_read_are_never_localized(rf, settings):
    """A shop showing prices as "1,299.00" sets USE_THOUSAND_SEPARATOR: Django then wrote the upload
    limit as "10,485,760" (German: "10.485.760"), which the script read as 10 bytes, refusing every
    photo as larger than 10 MB; a numeric filter went back as "1.234", a value that matches nothing."""
    from django.utils import translation

    settings.USE_THOUSAND_SEPARATOR = True
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_FILTERS": {"category": "category"}}
    for language in ("en", "de"):
        with translation.override(language):
            html = render_tags("{% visual_search_widget category=1234 limit=8 %}", request=rf.get("/"))
        assert 'data-max-bytes="10485760"' in html, language
        assert '<input type="hidden" name="category" value="1234">' in html and 'name="limit" value="8"' in html, language
        assert "bis zu 10 MB" in html if language == "de" else "up to 10 MB" in html  # words stay the customer's


@pytest.mark.parametrize("tag, sent, said", [
    ("{% visual_search_widget limit=60 %}", 'name="limit" value="50"', "limit=60 is outside 1 to API_MAX_LIMIT (50)"),
    ('{% visual_search_widget limit="a dozen" %}', None, "limit='a dozen' is not a whole number"),
    ("{% visual_search_widget catgory='milk' %}", None, "catgory= is neither an option nor a filter"),
])
def test_a_widget_the_api_would_refuse_says_so_in_the_log_and_still_searches(rf, caplog, tag, sent, said):
    """limit=60 posted 60, which the API refuses: every search said "This search form does not work
    right now" and nothing said why. A misspelt filter searched the whole catalogue, silently."""
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        html = render_tags(tag, request=rf.get("/"))
    assert said in caplog.text
    limits = re.findall(r'name="limit" value="[^"]*"', html)
    assert limits == ([sent] if sent else [])
    assert "catgory" not in html


def test_the_widget_says_whether_the_shop_decodes_heic_photos(rf, settings, monkeypatch):
    """The script refuses at once a HEIC photo the browser cannot convert where the shop cannot
    decode it, instead of sending megabytes to hear it: the form says which (``data-accepts-heic``)."""
    from visual_search import widget

    monkeypatch.setattr(widget, "heif_support", lambda: True)
    assert 'data-accepts-heic="1"' in render_tags("{% visual_search_widget %}", request=rf.get("/"))
    monkeypatch.setattr(widget, "heif_support", lambda: False)  # no pillow-heif
    assert 'data-accepts-heic="0"' in render_tags("{% visual_search_widget %}", request=rf.get("/"))
    monkeypatch.setattr(widget, "heif_support", lambda: True)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ALLOWED_FORMATS": ["JPEG", "PNG", "WEBP"]}
    assert 'data-accepts-heic="0"' in render_tags("{% visual_search_widget %}", request=rf.get("/"))
