"""The package's own *Product image index* admin page, as staff use it: which product each image
stands for, found by that product's name, filtered by the models that are indexed."""

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

import visual_search
from visual_search.admin import ImageEmbeddingAdmin
from visual_search.models import ImageEmbedding
from visual_search.reindex import reindex
from tests.conftest import catalogue_image, photos, staff_on_site
from tests.testapp.models import Product, ProductImage

pytestmark = pytest.mark.django_db(transaction=True)
INDEX = "/shopadmin/visual_search/imageembedding/"


class ProductAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@pytest.fixture
def staff_client(client, settings):
    return staff_on_site(client, settings, {Product: ProductAdmin, ImageEmbedding: ImageEmbeddingAdmin})


@pytest.fixture
def catalogue(make_product):
    with visual_search.pause_indexing(reindex_on_exit=False):
        lime = make_product("Persian lime", catalogue_image("Lime"))
        mango = make_product("Mango", catalogue_image("Mango"))
        shelf = ProductImage(product=lime)
        shelf.image.save("lime-shelf.jpg", ContentFile(photos()["Lime"][0].read_bytes()))
    reindex(asynchronous=False)
    return lime, mango


def rows(page: str) -> int:
    return page.count('class="action-select"')


def test_each_image_shows_its_product_linked_to_the_product_s_page(staff_client, catalogue):
    lime, mango = catalogue
    page = staff_client.get(INDEX).content.decode()
    assert rows(page) == 3
    assert f'<a href="/shopadmin/testapp/product/{lime.pk}/change/">Persian lime</a>' in page
    assert page.count(f'href="/shopadmin/testapp/product/{lime.pk}/change/"') == 2  # its own image and the shelf photo
    assert f'<a href="/shopadmin/testapp/product/{mango.pk}/change/">Mango</a>' in page


def test_each_row_shows_its_image_and_one_without_a_file_none(staff_client, catalogue):
    """Staff saw "Testapp | product #3.image (failed)": which picture failed, or which of a
    product's photos a row is, needed the file name looked up by hand."""
    lime, _ = catalogue
    shelf = ProductImage.objects.get(product=lime)
    page = staff_client.get(INDEX).content.decode()
    # Each the result cards' small picture, linked to the file.
    assert f'<a href="{lime.image.url}"' in page and f'<a href="{shelf.image.url}"' in page
    assert page.count('<img src="/media/visual_search/thumbnails/') == 3
    ImageEmbedding.objects.filter(object_id=str(shelf.pk)).update(source_name="")  # never computed
    page = staff_client.get(INDEX).content.decode()
    assert page.count('<img src="/media/visual_search/thumbnails/') == 2 and rows(page) == 3
    row = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    page = staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    assert f'<a href="{lime.image.url}"' in page and 'width="240"' in page
    assert '<img src="/media/visual_search/thumbnails/' in page


def test_each_image_link_is_named_for_a_screen_reader(staff_client, catalogue):
    """The thumbnails are links with only a picture in them, and the picture had alt="": a screen
    reader read a list of "link, link, link" (axe: link-name), on the list and the row's page."""
    import re

    lime, _ = catalogue
    page = staff_client.get(INDEX).content.decode()
    alts = re.findall(r'<a href="/media/[^"]*" target="_blank" rel="noopener"><img [^>]*alt="([^"]*)"', page)
    assert len(alts) == 3 and all(alts)
    assert f"Image {lime.image.name.rsplit('/', 1)[-1]} (opens in a new tab)" in alts
    row = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    page = staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    assert 'alt=""' not in page.split('id="content"', 1)[1]


def test_the_page_costs_the_same_queries_for_more_rows(staff_client, catalogue, make_product):
    with CaptureQueriesContext(connection) as three:
        staff_client.get(INDEX)
    make_product("Kiwi", catalogue_image("Kiwi"))
    make_product("Lemon", catalogue_image("Lemon"))
    with CaptureQueriesContext(connection) as five:
        assert rows(staff_client.get(INDEX).content.decode()) == 5
    assert len(five) == len(three), [q["sql"] for q in five]
    # Nor the vectors, its rows' or their duplicates' (2 KB each: 200 KB a page of 100 read for nothing).
    assert not [q["sql"] for q in five if '"vector"' in q["sql"]]


def test_staff_find_a_product_s_images_by_its_name(staff_client, catalogue):
    page = staff_client.get(INDEX, {"q": "persian"}).content.decode()  # in no file name: by the product's name
    assert rows(page) == 2 and ">Mango</a>" not in page
    assert rows(staff_client.get(INDEX, {"q": "mango"}).content.decode()) == 1
    assert rows(staff_client.get(INDEX, {"q": "lime-shelf"}).content.decode()) == 1  # the file name, as before
    assert rows(staff_client.get(INDEX, {"q": "papaya"}).content.decode()) == 0


def test_the_model_filter_lists_only_the_indexed_models(staff_client, catalogue):
    page = staff_client.get(INDEX).content.decode()
    filters = page.split('id="changelist-filter"')[1]
    assert "product image" in filters.lower() and "log entry" not in filters.lower() and "permission" not in filters.lower()


def test_recompute_reads_the_rows_ids_not_their_vectors(catalogue, monkeypatch):
    """"Select all" then "Recompute the selected embeddings" on 100,000 rows read every vector into
    the request (390 MB, 20 s) to learn which objects they are."""
    import visual_search.queue
    from django.contrib.auth.models import User
    from tests.test_admin_mixin import request_for

    sent = []
    monkeypatch.setattr(visual_search.queue, "use_celery", lambda: True)
    monkeypatch.setattr(visual_search.queue, "send", lambda name, args, **options: sent.append(args))
    request = request_for(User(is_staff=True, is_superuser=True), "post")
    with CaptureQueriesContext(connection) as captured:
        ImageEmbeddingAdmin(ImageEmbedding, admin.AdminSite()).requeue(request, ImageEmbedding.objects.all())
    assert [str(m) for m in request._messages] == ["3 images queued for recomputing."]
    assert sorted(len(args[2]) for args in sent) == [1, 2]  # the gallery's image, the products'
    reads = [q["sql"] for q in captured if q["sql"].startswith("SELECT") and "visual_search_imageembedding" in q["sql"]]
    assert reads and not [sql for sql in reads if '"vector"' in sql], reads


def test_german_staff_read_the_index_s_columns_and_fields_in_german(staff_client, catalogue, settings):
    """The index's columns and its change page read "UPDATED AT", "Field name", "Duplicate score"
    and "(ready)" in an otherwise German admin, and a similarity "0.997" where German writes 0,997."""
    from django.utils import translation

    from visual_search.admin_mixins import duplicate_words

    settings.LANGUAGE_CODE = "de"
    lime, mango = catalogue
    row = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    listing = staff_client.get(INDEX).content.decode()
    detail = staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    assert "Aktualisiert am" in listing and "Updated at" not in listing
    for english, german in (("Field name", "Feldname"), ("Duplicate score", "Duplikat-Ähnlichkeit"), ("Created at", "Erstellt am")):
        assert german in detail and english not in detail, english
    assert "(ready)" not in detail and "(Bereit)" in detail
    other = ImageEmbedding.objects.get(object_id=str(mango.pk), content_type__model="product")
    ImageEmbedding.objects.filter(pk=row.pk).update(duplicate_of=other, duplicate_score=0.9975)
    with translation.override("de"):
        assert "(Ähnlichkeit 0,997)" in duplicate_words(ImageEmbedding.objects.get(pk=row.pk))


def test_german_admin_titles_start_with_a_capital_as_django_s_own_do(staff_client, catalogue, settings):
    """The index's page read "indexiertes Bild zur Änderung auswählen": Django's German titles put the
    model's name first ("%s zur Änderung auswählen", "%s ändern"), and its own apps' names begin
    with a capital letter ("Benutzer", "Logeintrag", "Flat Page"). Ours did not where German starts
    with an adjective. The translations are capitalised, as Django's: no model changes, no migration."""
    from django.apps import apps
    from django.utils import translation

    settings.LANGUAGE_CODE = "de"
    lime, _ = catalogue
    row = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    assert "<h1>Indexiertes Bild zur Änderung auswählen</h1>" in staff_client.get(INDEX).content.decode()
    assert "<h1>Indexiertes Bild ändern</h1>" in staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    with translation.override("de"):
        for model in apps.get_app_config("visual_search").get_models():
            for name in (model._meta.verbose_name, model._meta.verbose_name_plural):
                assert str(name)[0].isupper(), (model.__name__, str(name))


def test_a_portrait_image_s_thumbnail_keeps_its_shape_under_a_strict_content_security_policy(staff_client, catalogue, make_product):
    """The thumbnails were fitted into their square by a style="" attribute, which a
    Content-Security-Policy without 'unsafe-inline' (the demo shop's) drops: a portrait photo
    (348 x 464, a sixth of the demo's gallery) showed stretched, and the console logged one
    violation a row. The page now carries no style attribute and loads the stylesheet that fits them."""
    import io

    from PIL import Image

    portrait = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 120, 40)).save(portrait, "JPEG")
    with visual_search.pause_indexing(reindex_on_exit=False):
        make_product("Tall carton", portrait.getvalue())
    reindex(asynchronous=False)
    page = staff_client.get(INDEX).content.decode()
    content = page.split('id="content"', 1)[1]
    assert content.count('class="vs-thumbnail"') == 4 and "style=" not in content.split('id="changelist-filter"', 1)[0]
    assert "/static/visual_search/admin.css" in page
    row = ImageEmbedding.objects.get(source_name__contains="Tall-carton")
    page = staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    assert 'class="vs-thumbnail"' in page and "/static/visual_search/admin.css" in page
    assert "style=" not in page.split('id="content"', 1)[1]


def test_a_failed_image_that_cannot_be_decoded_shows_its_file_name_not_a_broken_picture(staff_client, catalogue, make_product):
    """A damaged file's row drew the browser's broken-image icon, its alt text ("Image
    broken-jam.jpg (opens in a new tab)") wrapped down the column: no small copy can be made of a
    file that does not decode, and the file itself is no picture either. It is its name, linked."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        broken = make_product("Broken jam", b"\xff\xd8\xff\xe0" + b"x" * 3000)
    reindex(asynchronous=False)
    row = ImageEmbedding.objects.get(object_id=str(broken.pk), content_type__model="product")
    assert row.status == ImageEmbedding.Status.FAILED
    page = staff_client.get(INDEX).content.decode()
    name = broken.image.name.rsplit("/", 1)[-1]
    assert f'<img src="{broken.image.url}"' not in page
    assert f'class="vs-file-link" aria-label="Image {name} (opens in a new tab)">{name}</a>' in page
    assert page.count('<img src="/media/visual_search/thumbnails/') == 3  # the others keep their pictures
    page = staff_client.get(f"{INDEX}{row.pk}/change/").content.decode()
    assert f'<img src="{broken.image.url}"' not in page and f">{name}</a>" in page


def test_a_row_is_named_by_its_file_and_its_fingerprint_shortened(staff_client, catalogue):
    """The link read "Testapp | product #3.image (Ready)" (four lines of a narrow column, the status
    column said again), and the 16-character fingerprint pushed the last columns off a laptop's
    screen (1366 px with the admin's navigation open)."""
    lime, _ = catalogue
    row = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    page = staff_client.get(INDEX).content.decode()
    file_name = lime.image.name.rsplit("/", 1)[-1]
    assert f'<a href="{INDEX}{row.pk}/change/">{file_name}</a>' in page
    assert ">Testapp | product #" not in page  # (the checkbox is still announced so)
    assert f'<span title="{row.fingerprint}">{row.fingerprint[:8]}</span>' in page
    assert "visual_search/admin.css" in page  # the columns' widths


def test_a_row_s_status_column_says_why_it_failed_and_its_fingerprint(staff_client, catalogue, make_product):
    """The status, the error and the fingerprint were three columns: with the date (on one line)
    they scrolled sideways at 1366 px with the navigation sidebar open (tests below). They share
    the status column, sorted by the status; the fingerprint still whole on hover."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        broken = make_product("Broken jam", b"\xff\xd8\xff\xe0" + b"x" * 3000)
    reindex(asynchronous=False)
    row = ImageEmbedding.objects.get(object_id=str(broken.pk), content_type__model="product")
    page = staff_client.get(INDEX).content.decode()
    cell = page.split(f'{row.pk}/change/"', 1)[1].split('<td class="field-status_and_reason">', 1)[1].split("</td>", 1)[0]
    assert cell.startswith("Failed") and "damaged or truncated" in cell
    assert f'fingerprint <span title="{row.fingerprint}">{row.fingerprint[:8]}</span>' in cell
    assert '<th scope="col" class="sortable column-status_and_reason">' in page
    assert "column-short_error" not in page and "column-short_fingerprint" not in page


@pytest.mark.browser
def test_the_index_fits_a_laptop_with_the_navigation_sidebar_open(staff_client, catalogue, make_product, live_server, settings):
    """At 1366 x 768 with Django's navigation sidebar open the table has 717 px: its last two
    columns (the fingerprint and the date) scrolled sideways, in English and German alike."""
    from tests.test_browser import chromium

    with visual_search.pause_indexing(reindex_on_exit=False):
        make_product("Broken jam", b"\xff\xd8\xff\xe0" + b"x" * 3000)
    reindex(asynchronous=False)
    lime, mango = catalogue
    mine = ImageEmbedding.objects.get(object_id=str(lime.pk), content_type__model="product")
    ImageEmbedding.objects.filter(pk=mine.pk).update(duplicate_of=ImageEmbedding.objects.get(object_id=str(mango.pk), content_type__model="product"), duplicate_score=0.97)
    with chromium() as browser:
        for language in ("en", "de"):
            settings.LANGUAGE_CODE = language  # German words are longer ("Fehlgeschlagen", "Fingerabdruck")
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.add_cookies([{"name": "sessionid", "value": staff_client.cookies["sessionid"].value, "url": live_server.url}])
            page = context.new_page()
            page.goto(f"{live_server.url}{INDEX}")
            assert page.locator("#nav-sidebar").is_visible() and page.locator("#changelist-filter").is_visible()
            widths = page.evaluate("(() => { const r = document.querySelector('#changelist .results'); return [r.scrollWidth, r.clientWidth]; })()")
            assert widths[0] <= widths[1], (language, widths)
            context.close()
