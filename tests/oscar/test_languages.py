"""A German Oscar shop: Oscar's pages are German (its own catalogues), and so are ours in them: the
search page, the navbar's camera button, the results and the dashboard page."""

from __future__ import annotations

import re

import pytest
from django.utils import translation
from django.utils.translation import gettext as _

from tests.oscar.test_customers import photo
from tests.oscar.test_staff import STATUS, user
from visual_search.widget import results_found

pytestmark = [pytest.mark.oscar, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def german(settings):
    settings.LANGUAGE_CODE = "de"
    with translation.override("de"):
        yield


def test_the_search_page_and_its_results_are_german_in_a_german_oscar_shop(catalogue, client, german):
    page = client.get("/visual-search/").content.decode()
    assert _("Basket") != "Basket" and _("Basket") in page  # Oscar's own words: the shop is German
    assert _("Search by photo") != "Search by photo" and _("Search by photo") in page
    assert _("Take or choose a photo of a product.") in page and "Search by photo" not in page

    results = client.post("/visual-search/", {"image": photo("Banana")}).content.decode()
    # The page's widget holds the results (the navbar's camera button has a widget of its own).
    status = [part.split("</p>")[0] for part in results.split('data-vs-status role="status" aria-live="polite">')[1:] if part.split("</p>")[0]][0]
    counts = {results_found(n) for n in range(1, 13)}
    assert status in counts or _("No confident match. Possible matches, best first.") in status
    assert re.search(re.escape(_("{percent}% match")).replace(re.escape("{percent}"), r"(?:\d+|&lt;1)"), results)
    assert "% match" not in results and "Banana" in results


def test_the_dashboard_page_is_german(catalogue, client, german):
    client.force_login(user("redakteur", staff=True, perms=("catalogue.change_product",)))
    html = client.get(STATUS).content.decode()
    for words in ("Visual search", "Indexed images", "Index missing, stale and failed images", "Reindex every product image", "Why it failed"):
        assert _(words) != words and _(words) in html, words
    assert _("Dashboard") in html  # Oscar's breadcrumb, German too


def test_a_spanish_oscar_shop_marks_the_package_s_english_words(catalogue, client):
    # Oscar speaks Spanish (its own catalogues); the package has no Spanish: its words in the search
    # page's breadcrumb and the widget say lang="en", read with an English voice (WCAG 3.1.2).
    with translation.override("es"):
        html = client.get("/visual-search/").content.decode()
    assert re.search(r'<li class="breadcrumb-item active" aria-current="page" lang="en">\s*Search by photo', html), html
    roots = re.findall(r'<div class="vs-widget [^"]*" id="[^"]*" lang="([^"]*)" data-vs-language="([^"]*)"', html)
    assert roots and set(roots) == {("en", "es")}, roots
