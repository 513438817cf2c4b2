"""What a screen reader, a keyboard or a single pointer needs from what the package renders.

The pages were walked with axe-core (WCAG 2.2 AA) and by hand (keyboard only, a 390 px phone);
these tests keep what that walk fixed, on the rendered HTML and the widget's script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.template import Context, Template
from django.utils import translation

from tests.conftest import catalogue_image

PACKAGE = Path(__file__).resolve().parent.parent / "visual_search"

pytestmark = pytest.mark.django_db(transaction=True)


def render(source: str, **context) -> str:
    return Template("{% load visual_search %}" + source).render(Context(context))


@pytest.mark.parametrize("heading", [True, False])
def test_similar_products_say_their_language_as_the_widget_does(make_product, rf, heading):
    # A page whose <html lang> is another language (a shop's English layout, the package's words in
    # German) had "Ähnliche Produkte" and "Nicht auf Lager" read with English sounds: the widget
    # carried its lang="...", the look-alikes did not (WCAG 3.1.2, language of parts).
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    with translation.override("de"):
        html = render("{% similar_products product limit=2 heading=heading %}", product=product, heading=heading, request=rf.get("/"))
    section = re.search(r"<section [^>]*>", html).group(0)
    assert 'lang="de"' in section, section


def test_oscar_s_look_alikes_say_their_language_too():
    source = (PACKAGE / "contrib/oscar/templates/visual_search/oscar/similar_products.html").read_text()
    sections = re.findall(r"<section [^>]*>", source)
    assert sections and all('lang="{{ vs_language }}"' in s for s in sections), sections
