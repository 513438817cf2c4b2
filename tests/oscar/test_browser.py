"""An Oscar shop in Debian's Chromium, with Oscar's own stylesheets: what customers see of the
camera button. Marked ``browser`` too: needs ``apt-get install chromium`` and playwright."""

from __future__ import annotations

import pytest

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


def test_the_dashboard_page_fits_a_phone(catalogue, live_server, client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        page = context.new_page()
        only_from(page, live_server.url)
        page.goto(f"{live_server.url}/dashboard/visual-search/")
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
