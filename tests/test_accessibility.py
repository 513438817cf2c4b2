"""What a screen reader, a keyboard or a single pointer needs from what the package renders.

The pages were walked with axe-core (WCAG 2.2 AA) and by hand (keyboard only, a 390 px phone);
these tests keep what that walk fixed, on the rendered HTML and the widget's script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.utils import translation

from tests.conftest import catalogue_image, render_tags

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
    assert sections and all('lang="{{ vs_language }}"' in s for s in sections), sections


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
