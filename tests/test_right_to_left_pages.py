"""The package's staff pages and its own search page in a right-to-left language (Hebrew, Arabic,
Persian: LANGUAGE_BIDI, so Django's admin and visual_search/base.html say dir="rtl").

The package has no words in those languages: its English sentences and its figures sit inside
right-to-left lines, where the bidi algorithm moved a full stop to the sentence's start, a sign after
its number and the "after" figure before the arrow. Each test reads where Chromium drew the characters
(the customer widget's own right-to-left tests are in tests/test_crop_ui.py).
"""

from contextlib import contextmanager

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType

import visual_search
from visual_search.admin_mixins import VisualSearchAdminMixin
from visual_search.models import ImageEmbedding, ModelVersion, Whitening
from visual_search.serving import current_fingerprint
from tests.conftest import serve_admin_site
from tests.test_browser import chromium
from tests.drawn_text import CHARACTERS
from tests.testapp.models import Product

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def drawn(page, selector: str) -> list[dict]:
    return page.locator(selector).first.evaluate(CHARACTERS)


def reads_left_to_right(characters: list[dict]) -> bool:
    """Each character drawn to the right of the one before it on its line."""
    return all(b["x"] > a["x"] for a, b in zip(characters, characters[1:]) if a["y"] == b["y"])


def ends_with_its_full_stop(characters: list[dict]) -> bool:
    """The last character, a full stop, drawn after (to the right of) the word it ends."""
    *_, word, stop = characters
    return stop["c"] == "." and word["y"] == stop["y"] and stop["x"] > word["x"]


@pytest.fixture
def hebrew(settings, live_server, client):
    """A staff member's Chromium at 1280 px on the test project in Hebrew: ``with hebrew() as page``,
    once the test's rows are made (playwright's event loop in this thread stops Django's queries)."""
    settings.LANGUAGE_CODE = "he"
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))

    @contextmanager
    def staff_page():
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
            page = context.new_page()
            page.base = live_server.url
            yield page

    return staff_page


def visit(page, path: str) -> None:
    page.goto(page.base + path)
    assert page.evaluate("document.documentElement.dir") == "rtl"


def test_a_versions_figures_read_before_then_after_with_their_signs(hebrew):
    # The list read "0.538 → 0.412" under "P@1 before → after" (the new version looked worse), and the
    # version's page "0.126+" and "more than the) +0.126 ± 0.030 (noise".
    version = ModelVersion.objects.create(label="Spring", status="trained", metrics={
        "before": {"p_at_1": 0.412, "p_at_10": 0.3}, "after": {"p_at_1": 0.538, "p_at_10": 0.35},
        "passes": {"before": [4, 224], "after": [1, 224]},
        "difference": {"p_at_1": 0.126, "standard_error": 0.03, "photos": 81, "within_noise": False}})
    with hebrew() as page:
        visit(page, "/admin/visual_search/modelversion/")
        figures = drawn(page, "#result_list td.field-precision_at_1")
        visit(page, f"/admin/visual_search/modelversion/{version.pk}/change/")
        rows = {row.locator("th").inner_text(): row.locator("td").last for row in page.locator(".field-metrics_table tbody tr").all()}
        change = rows["Precision@1 by product"].evaluate(CHARACTERS)
        passes = page.locator(".field-metrics_table tbody tr", has_text="VGG16").locator("td").first.evaluate(CHARACTERS)
        paired = rows["Precision@1 change, paired (± one standard error)"].evaluate(CHARACTERS)
    assert "".join(c["c"] for c in figures).startswith("0.412→0.538")
    assert reads_left_to_right(figures[:11]), figures
    assert "".join(c["c"] for c in change) == "+0.126" and reads_left_to_right(change), change
    assert "".join(c["c"] for c in passes) == "4×224px" and reads_left_to_right(passes), passes
    assert "".join(c["c"] for c in paired) == "+0.126±0.030(morethanthenoise)"
    assert reads_left_to_right(paired), paired


def test_the_note_that_the_versions_page_updates_itself_ends_with_its_full_stop(hebrew):
    # It read ".This page updates itself every 5 seconds while a version is in progress".
    ModelVersion.objects.create(label="Next", status="building", progress={"stage": "building", "done": 2, "total": 6})
    with hebrew() as page:
        visit(page, "/admin/visual_search/modelversion/")
        words = drawn(page, ".vs-refresh > span")
        note, content = (page.locator(s).first.bounding_box() for s in (".vs-refresh > span", "#content-main"))
    assert words[0]["c"] == "T" and ends_with_its_full_stop(words), words
    # On the page's side: the note's right edge at the content's.
    assert words[-1]["x"] > note["x"] + note["width"] / 2 > content["x"] + content["width"] / 2


def test_the_search_tuning_s_scores_and_calibration_read_in_their_own_direction(hebrew):
    # The scores' sentences ended ".your catalogue's own" and the calibration (JSON) read '}"basis"...{'.
    Whitening.objects.create(result_type=ContentType.objects.get_for_model(Product), fingerprint="f", dimensions=2,
                             trained_on=3, mean=b"", projection=b"", calibration={
                                 "temperature": 0.0589, "none": 0.315, "fitted_on": 481, "error": 0.0888,
                                 "scoring": "expansion=0,prototype=0.5", "basis": "searches", "images_per_product": 7.0, "prior": 0.125})
    whitening = Whitening.objects.get()
    with hebrew() as page:
        visit(page, "/admin/visual_search/whitening/")
        listed = drawn(page, "#result_list td.field-scores")
        visit(page, f"/admin/visual_search/whitening/{whitening.pk}/change/")
        shown, calibration = drawn(page, ".field-scores .readonly"), drawn(page, ".field-calibration .readonly")
    assert ends_with_its_full_stop(listed) and ends_with_its_full_stop(shown), (listed, shown)
    assert calibration[0]["c"] == "{" and reads_left_to_right(calibration[:12]), calibration


def test_an_image_s_failure_reason_ends_with_its_full_stop(hebrew, make_product):
    with visual_search.pause_indexing(reindex_on_exit=False):
        product = make_product("Jam")
    kind = ContentType.objects.get_for_model(Product)
    ImageEmbedding.objects.create(content_type=kind, object_id=str(product.pk), field_name="image", result_type=kind,
                                  result_id=str(product.pk), status="failed", error="The image could not be fetched from storage.")
    with hebrew() as page:
        visit(page, "/admin/visual_search/imageembedding/")
        reason = drawn(page, "#result_list .vs-reason")
    assert ends_with_its_full_stop(reason), reason


def test_a_failed_image_s_reason_in_the_shop_s_product_list_ends_with_its_full_stop(hebrew, make_product, settings):
    # The mixin's "visual search" column on the shop's own product admin: "Failed: ..." likewise.
    site = admin.AdminSite(name="shopadmin")
    site.register(Product, type("ProductAdmin", (VisualSearchAdminMixin, admin.ModelAdmin), {"list_display": ["name", "visual_search_status"]}))
    serve_admin_site(settings, site)
    with visual_search.pause_indexing(reindex_on_exit=False):
        product = make_product("Jam")
    kind = ContentType.objects.get_for_model(Product)
    ImageEmbedding.objects.create(content_type=kind, object_id=str(product.pk), field_name="image", result_type=kind,
                                  result_id=str(product.pk), status="failed", error="The image could not be fetched from storage.",
                                  fingerprint=current_fingerprint())
    with hebrew() as page:
        visit(page, "/shopadmin/testapp/product/")
        reason = drawn(page, "#result_list .vs-status-failed")
    assert reason[0]["c"] == "F" and ends_with_its_full_stop(reason), reason


def test_the_search_page_s_intro_ends_with_its_full_stop_on_the_page_s_side(hebrew):
    # The package's own search page (no shop layout): ".Take a photo of a product, ..., and see what looks like it".
    with hebrew() as page:
        visit(page, "/search-by-photo/")
        intro = drawn(page, ".vs-page-intro")
        title, paragraph = page.locator(".vs-page-title").bounding_box(), page.locator(".vs-page-intro").bounding_box()
    assert intro[0]["c"] == "T" and ends_with_its_full_stop(intro), intro
    right = paragraph["x"] + paragraph["width"]
    assert abs(intro[-1]["x"] + intro[-1]["w"] - right) < 2 and abs(title["x"] + title["width"] - right) < 1
