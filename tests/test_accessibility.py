"""What a screen reader, a keyboard or a single pointer needs from what the package renders.

The pages were walked with axe-core (WCAG 2.2 AA) and by hand (keyboard only, a 390 px phone);
these tests keep what that walk fixed, on the rendered HTML and the widget's script.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from django.utils import translation

from tests.conftest import catalogue_image, render_tags
from visual_search.widget import words_language

PACKAGE = Path(__file__).resolve().parent.parent / "visual_search"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("heading", [True, False])
def test_similar_products_say_their_language_as_the_widget_does(make_product, rf, heading):
    # A page whose <html lang> is another language (a shop's English layout, the package's words in
    # German) had "Ähnliche Produkte" and "Nicht auf Lager" read with English sounds: the widget
    # carried its lang="...", the look-alikes did not (WCAG 3.1.2, language of parts).
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    with translation.override("de"):
        html = render_tags("{% similar_products product limit=2 heading=heading %}", product=product, heading=heading, request=rf.get("/"))
    section = re.search(r"<section [^>]*>", html).group(0)
    assert 'lang="de"' in section, section


def test_oscar_s_look_alikes_say_their_language_too():
    source = (PACKAGE / "contrib/oscar/templates/visual_search/oscar/similar_products.html").read_text()
    sections = re.findall(r"<section [^>]*>", source)
    assert sections and all('lang="{{ words_language }}"' in s for s in sections), sections
    assert '<ul class="row list-unstyled mx-0" lang="{{ page_language }}">' in source  # Oscar's cards: the shop's


# Language of parts (WCAG 3.1.2): the package's words are English, German or French; the shop's
# names, prices and links on the cards are in the page's language.
RESULT = {"name": "Leche de avena", "url": "/p/1/", "image_url": None, "score": 0.9, "price": "1,90", "available": False}


def langs(html: str, tag: str, css_class: str) -> list[str]:
    """The lang of each ``<tag class="css_class...">`` in ``html`` ("" for none)."""
    found = re.findall(rf'<{tag} class="{css_class}[^"]*"[^>]*>', html)
    return [(re.search(r' lang="([^"]*)"', element) or [None, ""])[1] for element in found]


def widget_languages(rf, language: str) -> dict[str, list[str]]:
    """The lang of the widget's parts, after a search without the script, rendered in ``language``."""
    with translation.override(language):
        html = render_tags("{% visual_search_widget %}", request=rf.get("/"), visual_search_results=[RESULT])
    return {
        "root": langs(html, "div", "vs-widget"), "page": re.findall(r'data-vs-language="([^"]*)"', html),
        "list": langs(html, "ol", "vs-grid"), "cards": langs(html, "li", "vs-card"),
        "words_on_cards": langs(html, "span", "vs-card-stock") + langs(html, "span", "vs-card-score"),
    }


def test_a_page_in_a_language_the_package_lacks_says_its_words_are_english(rf, settings):
    # A Spanish shop's widget said lang="es" round "Search by photo" and "1 result, best match
    # first.": a screen reader read the English with a Spanish voice. The widget's words say "en";
    # the shop's names, prices and links (cards, the script's cards from the template) stay "es".
    settings.LANGUAGES = [("en", "English"), ("es", "Spanish")]
    parts = widget_languages(rf, "es")
    assert parts["root"] == ["en"] and parts["page"] == ["es"], parts
    assert parts["list"] == ["es"] and parts["cards"] == ["es", "es"], parts  # the server's card, the script's template
    assert set(parts["words_on_cards"]) == {"en"}, parts  # "Out of stock", "90% match"


@pytest.mark.parametrize("language", ["en", "de", "fr", "de-at"])
def test_a_page_in_the_package_s_languages_says_its_own_language_throughout(rf, language):
    # As before: one language, the page's ("de-at" is German words: the "de" catalogue's).
    parts = widget_languages(rf, language)
    assert {value for values in parts.values() for value in values} == {language}, parts


def test_a_shop_whose_default_has_the_words_marks_them_in_it(rf, settings):
    # A Spanish visitor of a German shop (LANGUAGE_CODE "de") reads the package's German words:
    # Django falls back to the default language's catalogue.
    settings.LANGUAGE_CODE = "de"
    parts = widget_languages(rf, "es")
    assert parts["root"] == ["de"] and parts["page"] == ["es"] and parts["list"] == ["es"], parts


def mo_file(path: Path, messages: dict[str, str]) -> None:
    """A GNU gettext catalogue (.mo) at ``path`` with ``messages``, in UTF-8."""
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(messages)
    ids = [key.encode() for key in keys]
    strs = [messages[key].encode() for key in keys]
    start = 7 * 4 + 16 * len(keys)
    offsets, data = [], b""
    for text in ids + strs:
        offsets.append((len(text), start + len(data)))
        data += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", *pair) for pair in offsets) + data)


def test_a_shop_s_own_catalogue_makes_the_words_its_language(rf, settings, tmp_path, make_product):
    # A shop that translated the package into Spanish (LOCALE_PATHS, merged by Django) reads "es".
    mo_file(tmp_path / "es" / "LC_MESSAGES" / "django.mo", {
        "Take or choose a photo of a product.": "Haz o elige una foto de un producto.",
        "Similar products": "Productos similares",
    })
    settings.LOCALE_PATHS = [str(tmp_path)]
    parts = widget_languages(rf, "es")
    assert parts["root"] == ["es"] and parts["page"] == ["es"], parts
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    with translation.override("es"):
        assert words_language() == "es"
        html = render_tags("{% similar_products product limit=2 %}", product=product, request=rf.get("/"))
    assert "Productos similares" in html and langs(html, "section", "vs-similar") == ["es"], html


@pytest.mark.parametrize(("language", "words"), [("pt-br", "en"), ("es", "en"), ("de-at", "de-at"), ("en-gb", "en-gb")])
def test_the_words_language_follows_django_s_catalogues(language, words):
    with translation.override(language):
        assert words_language() == words
    for other, its_words in [("fr", "fr"), (language, words)]:  # asked afresh: nothing kept from another language
        with translation.override(other):
            assert words_language() == its_words


def test_look_alikes_in_a_language_the_package_lacks(make_product, rf):
    # The "Similar products" heading is the package's English; the cards, the shop's, are Spanish.
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    with translation.override("es"):
        html = render_tags("{% similar_products product limit=2 %}", product=product, request=rf.get("/"))
    assert langs(html, "section", "vs-similar") == ["en"] and langs(html, "ol", "vs-grid") == ["es"], html
    assert set(langs(html, "li", "vs-card")) == {"es"}, html


def test_the_box_is_sized_and_moved_without_dragging(rf):
    # Only a drag narrowed the box (WCAG 2.2's 2.5.7): a customer with a head pointer or a shaking
    # hand searched the whole photo or nothing. Smaller and Larger size it round its middle, and a
    # tap beside it (widget.js: centreAt) brings it onto the product; the hint says so.
    html = render_tags("{% visual_search_widget %}", request=rf.get("/"))
    crop = re.search(r'<div class="vs-crop" data-vs-crop hidden>.*?</p>\s*</div>', html, flags=re.S).group(0)
    buttons = re.findall(r'<button class="vs-button vs-size" type="button" data-vs-size="(-1|1)">([^<]+)</button>', crop)
    assert buttons == [("-1", "Smaller"), ("1", "Larger")]
    hint = re.search(r'id="vs-box-keys">(.*?)</p>', crop, flags=re.S).group(1)
    assert "Without dragging: make it smaller, then tap the product to bring it there." in hint
    script = (PACKAGE / "static/visual_search/widget.js").read_text()
    assert 'querySelectorAll("[data-vs-size]")' in script and "CropBox.prototype.resize = function (sign)" in script
    assert "this.centreAt(drag.start); } // a tap beside the box" in script


def test_the_number_fields_edges_are_seen(rf):
    # Without JavaScript the box is four number fields; their one edge was the lines' translucent
    # grey (rgba(128, 128, 128, .45): 1.7:1 on white), under the 3:1 a field needs (WCAG 1.4.11).
    css = (PACKAGE / "static/visual_search/widget.css").read_text()
    rule = re.search(r"\.vs-part-field input \{([^}]*)\}", css).group(1)
    assert "var(--vs-border" not in rule
    assert "border: 1px solid #767676" in rule  # 4.5:1 on white, where color-mix() is unknown
    assert "color-mix(in srgb, currentColor 65%, transparent)" in rule


def test_icon_font_glyphs_are_hidden_from_screen_readers():
    # Oscar's Font Awesome icons are a private-use character in ::before: a screen reader read the
    # look-alikes' "Available" and the dashboard's headings and buttons with a glyph it cannot name
    # before the words. The words say it all; the icons are hidden from it, as Font Awesome advises.
    templates = PACKAGE / "contrib/oscar/templates"
    icons = [(path.name, tag) for path in templates.rglob("*.html") for tag in re.findall(r"<i [^>]*>", path.read_text())]
    assert icons and all('aria-hidden="true"' in tag for _, tag in icons), icons


def test_the_dialog_scrolls_the_focus_out_from_under_its_sticky_bar():
    # Shift+Tab back up a phone's dialog left "Larger" and "Smaller" entirely behind the sticky bar
    # (close button and title): the keyboard's focus was nowhere to be seen (WCAG 2.4.11). The
    # dialog's scroll padding is the bar's height: its close button, padding and line.
    css = (PACKAGE / "static/visual_search/widget.css").read_text()
    close = re.search(r"\.vs-close \{[^}]*height: (max\(44px, 2\.25em\))", css).group(1)
    bar = re.search(r"\.vs-dialog-bar \{[^}]*padding: \.5rem[^}]*border-bottom: 1px", css)
    assert bar and f".vs-dialog {{ scroll-padding-top: calc({close} + 1rem + 1px); }}" in css


def test_the_results_are_a_landmark_only_while_they_hold_results(rf):
    """Before any search the widget rendered an empty "Search results" region: one more stop with
    nothing in it in a screen reader's list of landmarks. The script makes it one with its cards
    (``landmark``), from the label the template gives it; results the server rendered are one."""
    html = render_tags("{% visual_search_widget %}", request=rf.get("/"))
    results = re.search(r'<div class="vs-results"[^>]*>', html).group(0)
    assert 'role="region"' not in results and "aria-label" not in results
    assert 'data-vs-label="Search results"' in results
    script = (PACKAGE / "static/visual_search/widget.js").read_text()
    assert 'this.results.setAttribute("role", "region")' in script and "this.landmark(true)" in script
    assert script.count('results.textContent = ""') == 1  # emptied in one place, which drops the landmark


@pytest.mark.parametrize("mode", ["inline", "compact"])
def test_a_shop_s_own_label_says_the_page_s_language(rf, mode):
    # label="..." is the shop's words (translated by its template): Spanish inside the English widget.
    with translation.override("es"):
        html = render_tags("{% visual_search_widget label='Buscar por foto' mode=mode %}", request=rf.get("/"), mode=mode)
        plain = render_tags("{% visual_search_widget mode=mode %}", request=rf.get("/"), mode=mode)
    labelled = re.findall(r'<(?:h2|a) class="vs-(?:title|open)"[^>]*>', html)
    assert labelled and all(' lang="es"' in element for element in labelled), labelled
    assert ' lang="es"' not in "".join(re.findall(r'<(?:h2|a) class="vs-(?:title|open)"[^>]*>', plain))  # the package's label: the widget's
    with translation.override("de"):
        html = render_tags("{% visual_search_widget label='Mit Foto suchen' mode=mode %}", request=rf.get("/"), mode=mode)
    assert " lang=" not in "".join(re.findall(r'<(?:h2|a) class="vs-(?:title|open)"[^>]*>', html))  # as before


@pytest.mark.parametrize(("language", "marked"), [("es", 'lang="en"'), ("de", None), ("en", None)])
def test_the_search_page_s_own_heading_and_intro_say_their_language(client, language, marked):
    # The search page's heading and intro are the package's words: English on a Spanish page, which
    # read them with a Spanish voice; German and English pages are as before (no lang of their own).
    with translation.override(language):
        page = client.get("/search-by-photo/").content.decode()
    heading = re.search(r'<h1 class="vs-page-title">(.*?)</h1>', page, flags=re.S).group(1)
    intro = re.search(r'<p class="vs-page-intro"[^>]*>', page).group(0)
    assert re.search(r'<html lang="([^"]*)"', page).group(1) == language  # the page's
    if marked:
        assert heading.startswith(f"<span {marked}>") and marked in intro, (heading, intro)
    else:
        assert "lang=" not in heading + intro, (heading, intro)


@pytest.mark.parametrize(("language", "marked"), [("es", ' lang="es"'), ("de", ""), ("en", "")])
def test_words_another_app_translated_say_the_page_s_language(rf, language, marked):
    # Django admin's catalogue (merged into every app's) has "Search" and "Close": a Spanish shop's
    # widget shows "Buscar" and "Cerrar" among its English words. They say "es", not the widget's "en".
    with translation.override(language):
        html = render_tags('{% visual_search_widget mode="compact" %}', request=rf.get("/"))
    close = re.search(r'<button class="vs-close"[^>]*>', html).group(0)
    search = re.search(r'<button class="vs-button vs-submit"[^>]*>', html).group(0)
    assert (" lang=" in close, " lang=" in search) == (bool(marked), bool(marked)) and marked in close and marked in search, (close, search)
