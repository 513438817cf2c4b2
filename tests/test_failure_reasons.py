"""Why an image failed to index, in the staff member's language.

The Celery worker stores the reason (``ImageEmbedding.error``) in English, in whatever language it
runs; German and French staff read it in English on every page that showed it. It is stored in
English still (stable words: ``visual_search_status`` finds missing files by them), and shown
translated in the admin (its language); ``visual_search_status --failed`` prints English, as commands do.
"""

import html
import io
import re
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.utils import translation

import visual_search
from visual_search import reasons
from visual_search.admin import ImageEmbeddingAdmin
from visual_search.admin_mixins import VisualSearchAdminMixin
from visual_search.embeddings import images
from visual_search.exceptions import InvalidImage
from visual_search.indexing import MISSING_FROM_STORAGE, gave_up_reason, missing_reason
from visual_search.models import ImageEmbedding
from visual_search.reasons import describe_failure
from visual_search.serving import current_fingerprint
from tests.conftest import staff_on_site
from tests.testapp.models import Product

INDEX = "/shopadmin/visual_search/imageembedding/"

DAMAGED = "The image file is damaged or truncated: its header cannot be read. (OSError)"
DAMAGED_DE = "Die Bilddatei ist beschädigt oder unvollständig: Ihr Header kann nicht gelesen werden. (OSError)"
MISSING_DE = "Die Bilddatei 'products/jam.jpg' fehlt im Speicher. Laden Sie das Bild erneut hoch"
GAVE_UP_DE = "Hat 3-mal das Zeitlimit überschritten"
UNKNOWN = "Our own importer refused this picture."


def stored_damaged() -> str:
    """What the worker stores for a file whose header Pillow cannot read."""
    with pytest.raises(InvalidImage) as refused:
        images.open_image(b"\xff\xd8\xff\xe0" + b"x" * 3000, max_pixels=10**6, allowed_formats=["JPEG"])
    return refused.value.for_staff


def test_the_worker_stores_english_whatever_its_language():
    with translation.override("de"):
        missing, gave_up = missing_reason("products/jam.jpg"), gave_up_reason(3)
    assert missing.startswith("The image file 'products/jam.jpg' is missing from storage. Upload the image again")
    assert MISSING_FROM_STORAGE in missing  # what visual_search_status counts missing files by
    assert gave_up.startswith("Took longer than the time limit 3 times")


@pytest.mark.parametrize("language", ["de", "fr"])
def test_every_reason_reads_translated_with_its_values_and_the_decoder_s_words(language):
    values = {"megabytes": 20, "kind": "TIFF", "formats": "JPEG, PNG", "most": "89,478,485", "width": 9000, "height": 12000,
              "scans": "501", "size": "4,096", "name": "'products/jam.jpg'", "count": 3}
    for msgid in reasons.REASONS:
        stored = msgid % values if "%(" in msgid else msgid
        with translation.override(language):
            expected = translation.gettext(msgid) % values if "%(" in msgid else translation.gettext(msgid)
            assert expected != stored, f"{language} lacks: {msgid}"
            assert describe_failure(stored) == expected
            assert describe_failure(f"{stored} (OSError: image file is truncated (3 bytes not processed))") == (
                f"{expected} (OSError: image file is truncated (3 bytes not processed))")
        assert describe_failure(stored) == stored  # in English, as it is


def test_a_reason_it_does_not_know_reads_as_stored():
    with translation.override("de"):
        assert describe_failure(UNKNOWN) == UNKNOWN
        assert describe_failure("") == ""
        assert describe_failure("The image file is damaged or truncated. And more.") == "The image file is damaged or truncated. And more."
        # Stored in German by a German worker before: as it is.
        german = "Die Bilddatei ist beschädigt oder unvollständig."
        assert describe_failure(german) == german


def test_a_damaged_file_s_stored_reason_reads_in_german():
    stored = stored_damaged()
    assert stored == DAMAGED
    with translation.override("de"):
        assert describe_failure(stored) == DAMAGED_DE


def text(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.content.decode())


class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]


@pytest.fixture
def failed(make_product):
    """Four products whose rows failed, each with an English reason as the worker stored it."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = {key: make_product(f"{key} jam", b"not an image") for key in ("damaged", "missing", "gave_up", "unknown")}
    stored = {"damaged": DAMAGED, "missing": missing_reason("products/jam.jpg"), "gave_up": gave_up_reason(3), "unknown": UNKNOWN}
    for key, product in products.items():
        ImageEmbedding.objects.for_object(product).update(status="failed", error=stored[key])
    return products


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_each_stored_reason_in_german(client, settings, failed):
    settings.LANGUAGE_CODE = "de"  # a German shop's admin
    staff_on_site(client, settings, {Product: ProductAdmin, ImageEmbedding: ImageEmbeddingAdmin})
    # The image index's error column (its first 120 characters).
    page = text(client.get(INDEX))
    assert DAMAGED_DE in page and MISSING_DE[:100] in page and GAVE_UP_DE in page and UNKNOWN in page
    assert "damaged or truncated" not in page and "is missing from storage" not in page and "Took longer" not in page
    # Each row's page: the whole reason.
    for key, words in (("damaged", DAMAGED_DE), ("missing", MISSING_DE), ("gave_up", GAVE_UP_DE), ("unknown", UNKNOWN)):
        row = ImageEmbedding.objects.for_object(failed[key]).get()
        page = text(client.get(f"{INDEX}{row.pk}/change/"))
        assert words in page, key
        assert "damaged or truncated" not in page and "is missing from storage" not in page and "Took longer" not in page
    # The products' list: its visual search column, and the page of a product.
    page = text(client.get("/shopadmin/testapp/product/"))
    assert DAMAGED_DE in page and MISSING_DE[:100] in page and GAVE_UP_DE in page and UNKNOWN in page
    assert "damaged or truncated" not in page and "Took longer" not in page
    page = text(client.get(f"/shopadmin/testapp/product/{failed['damaged'].pk}/change/"))
    assert DAMAGED_DE in page and "damaged or truncated" not in page


@pytest.mark.django_db(transaction=True)
def test_the_admin_in_french_too(client, settings, failed):
    settings.LANGUAGE_CODE = "fr"
    staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    page = text(client.get(INDEX))
    assert "Le fichier image est endommagé ou tronqué\u00a0: son en-tête ne peut pas être lu. (OSError)" in page
    assert "A dépassé la limite de temps 3 fois" in page


@pytest.mark.django_db(transaction=True)
def test_status_failed_lists_the_reasons_as_stored_in_english(settings, failed):
    """Commands print English (docs/staff.md), their reasons too, whatever LANGUAGE_CODE is."""
    settings.LANGUAGE_CODE = "de"
    out = io.StringIO()
    call_command("visual_search_status", "--failed", stdout=out)
    lines = {key: next(line for line in out.getvalue().splitlines() if re.search(rf"#{product.pk}: ", line))
             for key, product in failed.items()}
    assert DAMAGED_DE not in out.getvalue() and lines["unknown"].endswith(UNKNOWN)
    assert MISSING_FROM_STORAGE in lines["missing"]
    assert ImageEmbedding.objects.filter(fingerprint=current_fingerprint(), error__contains=MISSING_FROM_STORAGE).count() == 1
    assert "4 images failed" in out.getvalue()


def test_no_reason_is_written_where_it_is_raised():
    """A sentence written at the raise (not one of reasons.REASONS) would read in English to every reader."""
    package = Path(visual_search.__file__).parent
    written = re.compile(r"\b(?:InvalidImage|ImageTooLarge|UnsupportedFormat|cls)\(\s*f?[\"']")
    found = [f"{path.relative_to(package)}: {match[0]}" for path in package.rglob("*.py")
             for match in written.finditer(path.read_text())]
    assert found == []
