"""An Oscar shop in Debian's Chromium, with Oscar's own stylesheets: what customers see of the
camera button. Marked ``browser`` too: needs ``apt-get install chromium`` and playwright."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from tests.drawn_text import CHARACTERS
from tests.test_browser import chromium

pytestmark = [pytest.mark.oscar, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# WCAG 2.1 AA, non-text contrast (1.4.11): a control's icon against what is behind it, 3:1 at least.
CONTRAST = """el => {
  const rgba = c => c.match(/[\\d.]+/g).map(Number);
  const behind = node => {
    for (; node; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const back = behind(el), fore = rgba(getComputedStyle(el).color);
  const alpha = fore.length > 3 ? fore[3] : 1;
  const seen = fore.slice(0, 3).map((v, i) => v * alpha + back[i] * (1 - alpha));
  const lum = c => c.map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [a, b] = [lum(seen), lum(back)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def only_from(page, origin: str) -> None:
    """Requests to anywhere but the live server are refused: no network here (Oscar's CDN fonts)."""
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin) else route.abort())


def test_the_camera_button_stands_out_on_oscars_dark_navbar(catalogue, live_server):
    # Playwright's loop is started after the catalogue is made and stopped before the database is
    # flushed: Django refuses database calls while an event loop runs in the thread.
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        only_from(page, live_server.url)
        page.goto(f"{live_server.url}/catalogue/")
        button = page.locator(".navbar-dark [data-vs-open]")
        assert button.count() == 1 and button.is_visible()
        # Bootstrap colours a navbar's links and .navbar-text only: the button was the body's dark
        # text on the dark bar (1.3:1) until its wrapper became .navbar-text.
        assert button.evaluate(CONTRAST) >= 3
        button.click()
        assert page.evaluate("document.getElementById('vs-compact-dialog').open")


@contextmanager
def dashboard_as_staff(client, live_server, *, width: int, height: int):
    """The visual search dashboard page, open in Chromium at ``width`` x ``height`` for a superuser."""
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    with chromium() as browser:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        page = context.new_page()
        only_from(page, live_server.url)
        page.goto(f"{live_server.url}/dashboard/visual-search/")
        yield page


def test_the_dashboard_page_fits_a_phone(catalogue, live_server, client):
    with dashboard_as_staff(client, live_server, width=390, height=844) as page:
        assert page.locator("#vs-counts").is_visible() and page.locator("#vs-products").is_visible()
        # The tables scroll inside their boxes; the page itself never scrolls sideways (it did: 558 px).
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_cached_look_alikes_basket_button_works_for_the_next_visitor(catalogue, live_server, settings, tmp_path):
    # A shop's usual move (customers.md): the look-alikes in a {% cache %} fragment. Its basket
    # forms carry the first visitor's CSRF token; the next visitor's button was answered 403.
    (tmp_path / "oscar" / "catalogue").mkdir(parents=True)
    (tmp_path / "oscar" / "catalogue" / "detail.html").write_text(
        '{% extends "oscar/catalogue/detail.html" %}{% load cache visual_search %}{% block product_info %}{{ block.super }}'
        '{% cache 600 similar product.pk LANGUAGE_CODE %}{% similar_products product limit=4 template="visual_search/oscar/similar_products.html" %}{% endcache %}'
        "{% endblock %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cached-cards"}}
    url = f"{live_server.url}{catalogue['Granny-Smith'].get_absolute_url()}"
    with chromium() as browser:
        for visitor in ("first", "next"):
            page = browser.new_context().new_page()
            only_from(page, live_server.url)
            page.goto(url)
            card = page.locator(".vs-oscar-similar form").first
            title = card.locator("xpath=ancestor::article[1]//h3").inner_text().strip()
            with page.expect_response(lambda response: "/basket/add/" in response.url) as added:
                card.locator("button").click()
            assert added.value.status == 302, f"{visitor} visitor's Add to basket: {added.value.status}"
            page.wait_for_load_state()
            assert f"{title} has been added to your cart" in page.locator(".alert").first.inner_text()


def ends_with_its_full_stop(characters: list[dict]) -> bool:
    """The last character, a full stop, drawn after (to the right of) the word it ends."""
    *_, word, stop = characters
    return stop["c"] == "." and word["y"] == stop["y"] and stop["x"] > word["x"]


def test_the_dashboard_s_english_sentences_end_with_their_full_stop_in_a_right_to_left_shop(catalogue, live_server, client, settings):
    """A Hebrew (Arabic, Persian) shop whose Oscar layout says dir="rtl": the score note and a failed
    image's reason read ".your catalogue's own" and ".The file is not an image we can read" (the full
    stop at the start), as the admin's did; they are isolated in their own direction (<bdi>). Oscar's
    own base.html sets no dir: the shop's override adds it (and Oscar's Bootstrap 4 keeps text left)."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.files.base import ContentFile

    from tests.oscar.conftest import ProductImage
    from visual_search.models import Whitening
    from visual_search.serving import current_fingerprint

    settings.LANGUAGE_CODE = "he"
    broken = ProductImage(product=catalogue["Banana"])
    broken.original.save("broken.jpg", ContentFile(b"not a jpeg at all"), save=False)
    broken.save()
    Whitening.objects.create(result_type=ContentType.objects.get_for_model(catalogue["Banana"]), fingerprint=current_fingerprint(),
                             dimensions=2, trained_on=3, mean=b"", projection=b"", calibration={
                                 "temperature": 0.0589, "none": 0.315, "fitted_on": 481, "error": 0.0888,
                                 "scoring": "expansion=0,prototype=0.5", "basis": "searches", "images_per_product": 7.0, "prior": 0.125})
    with dashboard_as_staff(client, live_server, width=1280, height=900) as page:
        page.evaluate("document.documentElement.dir = 'rtl'")  # the shop's base.html: <html dir="rtl">
        scores, reason = (page.locator(s).first.evaluate(CHARACTERS) for s in ("#vs-scores", "#vs-products td.text-danger:not(:empty)"))
    assert ends_with_its_full_stop(scores) and ends_with_its_full_stop(reason), (scores[-3:], reason[-3:])
