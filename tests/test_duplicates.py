"""Possible duplicate images: flagged when indexed, dismissed by staff, listed by a command, shown in the admin."""

import io
import logging

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from PIL import Image

from tests.conftest import catalogue_image, photos, staff_on_site
from tests.testapp.models import Product, ProductImage
from visual_search import duplicates
from visual_search.admin import ImageEmbeddingAdmin
from visual_search.admin_mixins import VisualSearchAdminMixin
from visual_search.models import DuplicateDismissal, ImageEmbedding

# The tests' seeded random VGG16 finds every photo alike (cosine 0.987 to 0.997 between different
# products), and a re-compressed copy at 0.9999: the product's threshold is measured on ImageNet's
# weights (benchmarks duplicates), this one on the tests' network.
THRESHOLD = 0.999

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def threshold(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "DUPLICATE_THRESHOLD": THRESHOLD}


def recompressed(source, quality=40) -> bytes:
    out = io.BytesIO()
    Image.open(source).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def row_of(product) -> ImageEmbedding:
    return ImageEmbedding.objects.for_object(product).get()


def test_the_same_file_on_two_products_is_flagged_on_both(make_product):
    first = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    second = make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    a, b = row_of(first), row_of(second)
    assert b.duplicate_of_id == a.pk and a.duplicate_of_id == b.pk
    assert b.duplicate_score == pytest.approx(1.0)
    (pair,) = duplicates.find_pairs()
    assert pair.same_file and {pair.first.pk, pair.second.pk} == {a.pk, b.pk}


def test_a_recompressed_copy_is_flagged(make_product):
    original = make_product("Granny Smith", catalogue_image("Granny-Smith"))
    copy = make_product("Green apple", recompressed(catalogue_image("Granny-Smith")))
    row = row_of(copy)
    assert row.duplicate_of_id == row_of(original).pk
    assert THRESHOLD <= row.duplicate_score < 1.0 + 1e-6
    (pair,) = duplicates.find_pairs()
    assert not pair.same_file


def test_photos_of_two_different_products_are_not_flagged(make_product):
    apples, soy = photos()["Pink-Lady"][0], photos()["Alpro-Fresh-Soy-Milk"][0]
    make_product("Pink Lady", apples)
    make_product("Soy milk", soy)
    make_product("Granny Smith", photos()["Granny-Smith"][0])
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    assert duplicates.find_pairs() == []


def test_two_images_of_one_product_are_not_flagged(make_product):
    product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    gallery = ProductImage(product=product)
    gallery.image.save("same.jpg", ContentFile(catalogue_image("Pink-Lady").read_bytes()))
    assert ImageEmbedding.objects.filter(status="ready").count() == 2
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    assert duplicates.find_pairs() == []


def test_a_dismissed_pair_stays_dismissed_after_reindexing(make_product):
    from visual_search.indexing import index_objects
    from visual_search.registry import get_registration

    first = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    second = make_product("Pink Lady big", catalogue_image("Pink-Lady"))
    duplicates.dismiss(row_of(second), row_of(first))
    assert DuplicateDismissal.objects.count() == 1
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    index_objects(get_registration("testapp.product", "image"), [first.pk, second.pk], force=True)
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    assert duplicates.find_pairs() == []
    (pair,) = duplicates.find_pairs(include_dismissed=True)
    assert pair.dismissed


def test_deleting_the_other_product_clears_the_flag(make_product):
    first = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    second = make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    assert row_of(second).duplicate_of_id is not None
    first.delete()
    row = row_of(second)
    assert row.duplicate_of_id is None and row.duplicate_score is None


def test_no_threshold_no_detection(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "DUPLICATE_THRESHOLD": None}
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    (pair,) = duplicates.find_pairs()  # the listing still finds the same file
    assert pair.same_file


def test_checking_a_batch_costs_a_few_queries_however_many_images(make_product, django_assert_max_num_queries):
    """A reindex checks each stored batch: it read the candidates, the dismissals and wrote a flag
    with five queries per image (a third of a 1,000-image reindex's time on AMX with int8). Now a
    batch's reads are three queries, and a row with no flag that gets none is not written."""
    names = ["Pink-Lady", "Granny-Smith", "Banana", "Avocado", "Aubergine", "Cabbage"]
    originals = [make_product(name, catalogue_image(name)) for name in names]
    copy = make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    rows = list(ImageEmbedding.objects.filter(status=ImageEmbedding.Status.READY).order_by("pk"))
    with django_assert_max_num_queries(4 + 2 * 2):  # reads, then two writes per row of the pair
        assert duplicates.detect(rows) == 2
    assert row_of(copy).duplicate_of_id == row_of(originals[0]).pk
    assert row_of(originals[0]).duplicate_of_id == row_of(copy).pk
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exclude(pk__in=[row_of(copy).pk, row_of(originals[0]).pk]).exists()


def test_a_failing_check_does_not_fail_indexing(make_product, monkeypatch, caplog):
    def broken(rows):
        raise RuntimeError("backend down")

    monkeypatch.setattr(duplicates, "candidates_of", broken)
    with caplog.at_level(logging.ERROR, logger="visual_search"):
        product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    assert row_of(product).status == ImageEmbedding.Status.READY
    assert "Duplicate image check failed" in caplog.text


# -- the command ------------------------------------------------------------------------------------


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("visual_search_duplicates", *args, stdout=out, stderr=err)
    except SystemExit as exit:
        code = exit.code
    return code, out.getvalue()


def test_the_command_exits_0_when_nothing_is_found(make_product):
    make_product("Pink Lady", photos()["Pink-Lady"][0])
    make_product("Soy milk", photos()["Alpro-Fresh-Soy-Milk"][0])
    code, out = run()
    assert code == 0 and "No possible duplicate images (threshold 0.999)" in out


def test_the_command_lists_pairs_and_exits_1(make_product):
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    make_product("Apple copy", catalogue_image("Pink-Lady"))
    make_product("Green apple", catalogue_image("Granny-Smith"))
    make_product("Green copy", recompressed(catalogue_image("Granny-Smith")))
    code, out = run()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["product", "image"] and "similarity" in lines[0]
    assert "Pink Lady" in lines[1] and "Apple copy" in lines[1] and "same file" in lines[1]  # same files first
    assert "Green apple" in lines[2] and "Green copy" in lines[2] and "same file" not in lines[2]
    assert "products/" in lines[1]  # the images' file names
    assert "2 possible duplicate pairs" in out
    # A strict threshold keeps only the same file; the model filter.
    code, out = run("--threshold", "1.0")
    assert code == 1 and "Green copy" not in out and "1 possible" in out
    assert run("--model", "testapp.Product")[0] == 1


def test_the_command_s_model_is_a_searchable_one_or_an_error(make_product):
    """``--model`` names a searchable model. A gallery model stands for its product, as in
    visual_search_rebuild_index; a model no registration returns is an error. Both answered "No
    possible duplicate images" and exit status 0, so a nightly check said all was well."""
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    make_product("Apple copy", catalogue_image("Pink-Lady"))
    code, out = run("--model", "testapp.ProductImage")
    assert code == 1 and "searched as testapp.Product" in out and "Apple copy" in out
    with pytest.raises(CommandError, match="auth.User is not searchable"):
        run("--model", "auth.User")
    with pytest.raises(CommandError, match="No model 'testapp.Prodcut'; did you mean 'testapp.Product'"):
        run("--model", "testapp.Prodcut")


def test_the_command_skips_dismissed_pairs_unless_asked(make_product):
    first = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    second = make_product("Apple copy", catalogue_image("Pink-Lady"))
    duplicates.dismiss(row_of(first), row_of(second))
    assert run()[0] == 0
    code, out = run("--include-dismissed")
    assert code == 1 and "dismissed" in out


# -- the admin --------------------------------------------------------------------------------------


class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["name"]


@pytest.fixture
def client_on_site(client, settings):
    return staff_on_site(client, settings, {Product: ProductAdmin, ImageEmbedding: ImageEmbeddingAdmin})


@pytest.fixture
def pair(make_product):
    first = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    second = make_product("Apple copy", catalogue_image("Pink-Lady"))
    make_product("Soy milk", photos()["Alpro-Fresh-Soy-Milk"][0])
    return first, second


def test_the_change_page_warns_and_its_button_dismisses(client_on_site, pair):
    _, second = pair
    page = client_on_site.get(f"/shopadmin/testapp/product/{second.pk}/change/").content.decode()
    assert "This image is a possible duplicate of Pink Lady (similarity 1.000, same file)" in page
    assert "Not a duplicate" in page
    first = pair[0]  # both pictures in the warning: a copy, or two products that look alike?
    warning = page.split("This image is a possible duplicate")[0].rsplit("<li", 1)[1] + page.split("This image is a possible duplicate")[1].split("</li>")[0]
    assert f'<a href="{second.image.url}"' in warning and f'<a href="{first.image.url}"' in warning
    assert warning.count('<img src="/media/visual_search/thumbnails/') == 2
    url = f"/shopadmin/testapp/product/{second.pk}/visual-search-not-duplicate/"
    assert client_on_site.get(url).status_code == 403  # POST only
    response = client_on_site.post(url, follow=True)
    assert response.redirect_chain[-1][0] == f"/shopadmin/testapp/product/{second.pk}/change/"
    page = response.content.decode()
    assert "1 possible duplicate dismissed" in page and "This image is a possible duplicate" not in page
    assert DuplicateDismissal.objects.count() == 1
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()  # both sides cleared


def test_the_list_column_filter_and_action(client_on_site, pair):
    first, _ = pair
    listing = client_on_site.get("/shopadmin/testapp/product/").content.decode()
    assert "possible duplicate image" in listing  # the filter's title
    assert "possible duplicate of Apple copy (similarity 1.000, same file)" in listing
    flagged = client_on_site.get("/shopadmin/testapp/product/?visual_search_duplicate=yes").content.decode()
    assert "Apple copy" in flagged and "Soy milk" not in flagged
    clean = client_on_site.get("/shopadmin/testapp/product/?visual_search_duplicate=no").content.decode()
    assert "Soy milk" in clean and "Apple copy" not in clean
    response = client_on_site.post(
        "/shopadmin/testapp/product/",
        {"action": "visual_search_dismiss_duplicates", "_selected_action": [first.pk]},
        follow=True,
    )
    assert "1 possible duplicate dismissed" in response.content.decode()
    assert "possible duplicate of" not in client_on_site.get("/shopadmin/testapp/product/").content.decode()


def test_the_index_admin_column_and_filter(client_on_site, pair):
    page = client_on_site.get("/shopadmin/visual_search/imageembedding/?possible_duplicate=yes").content.decode()
    assert "Possible duplicate of" in page and "Pink Lady (1.000, same file)" in page
    assert page.count('class="action-select"') == 2
    page = client_on_site.get("/shopadmin/visual_search/imageembedding/?possible_duplicate=no").content.decode()
    assert page.count('class="action-select"') == 1


def test_the_index_admin_shows_both_images_of_a_possible_duplicate(client_on_site, pair):
    """Staff had a product's name and "0.997" to judge a pair by: each row shows its image, the
    column the other image, and the row's page both side by side with a link to the other row."""
    first, second = pair
    mine = ImageEmbedding.objects.get(object_id=str(second.pk))
    theirs = ImageEmbedding.objects.get(object_id=str(first.pk))
    assert mine.duplicate_of_id == theirs.pk
    page = client_on_site.get("/shopadmin/visual_search/imageembedding/?possible_duplicate=yes").content.decode()
    assert page.count(f'<a href="{second.image.url}"') == 2  # its own row and the other's column
    assert page.count(f'<a href="{first.image.url}"') == 2
    page = client_on_site.get(f"/shopadmin/visual_search/imageembedding/{mine.pk}/change/").content.decode()
    assert f'<a href="{second.image.url}"' in page and f'<a href="{first.image.url}"' in page
    assert page.count('<img src="/media/visual_search/thumbnails/') == 2
    assert f'href="/shopadmin/visual_search/imageembedding/{theirs.pk}/change/"' in page


@pytest.mark.parametrize(("score", "shown"), [(0.99749, "0.997"), (0.99999, "0.999"), (1.0, "1.000"), (0.99999994, "1.000"), (None, "0.000")])
def test_a_duplicate_s_similarity_never_reads_identical_unless_it_is(score, shown):
    """Pairs are flagged from 0.997: at two decimals, rounded, every flagged pair read "1.00". The same
    file's identical vectors may score 0.99999994 in float32: that is 1.000."""
    from visual_search.duplicates import shown_similarity

    assert f"{shown_similarity(score):.3f}" == shown


def test_a_page_of_possible_duplicates_costs_the_same_queries_however_many_rows(client_on_site, pair, make_product):
    """Each flagged row looked up its warning and the other product on its own: 206 queries for a
    page of possible duplicates in a 3,000-product shop. Now a fixed number per page."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(url):
        # Once first: what the package holds for a few seconds (the serving version, the calibration)
        # is looked up again after it expires, and making four products can take that long on a busy
        # machine (9 queries, then 10). The rows' own queries are what is compared.
        client_on_site.get(url)
        with CaptureQueriesContext(connection) as captured:
            page = client_on_site.get(url).content.decode()
        return len(captured), page

    few, _ = queries("/shopadmin/testapp/product/?visual_search_duplicate=yes")
    few_index, _ = queries("/shopadmin/visual_search/imageembedding/?possible_duplicate=yes")
    for n in range(4):  # four more copies of the same photo: each flagged as a duplicate
        make_product(f"Copy {n}", catalogue_image("Pink-Lady"))
    many, page = queries("/shopadmin/testapp/product/?visual_search_duplicate=yes")
    assert page.count("possible duplicate of Pink Lady") >= 4
    assert many == few, (few, many)
    many_index, page = queries("/shopadmin/visual_search/imageembedding/?possible_duplicate=yes")
    assert page.count("Pink Lady (1.000, same file)") >= 4 and many_index == few_index, (few_index, many_index)


def test_dismissing_across_a_large_selection_costs_no_queries_per_product(client_on_site, pair):
    """"Select all" then the dismiss action: only the products with a warning are looked at, their
    flagged rows fetched together (two queries per selected product took minutes at 20,000)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def dismiss_all() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client_on_site.post(
                "/shopadmin/testapp/product/",
                {"action": "visual_search_dismiss_duplicates", "select_across": "1", "index": "0", "_selected_action": [pair[0].pk]},
                follow=True,
            )
        assert "possible duplicate" in response.content.decode()
        return len(captured)

    flags = list(ImageEmbedding.objects.filter(duplicate_of__isnull=False).values_list("pk", "duplicate_of", "duplicate_score"))
    assert flags

    def flag_again() -> None:
        DuplicateDismissal.objects.all().delete()
        for pk, other, score in flags:
            ImageEmbedding.objects.filter(pk=pk).update(duplicate_of=other, duplicate_score=score)

    Product.objects.bulk_create([Product(name=f"Plain {i}") for i in range(5)])
    few = dismiss_all()
    assert DuplicateDismissal.objects.count() == 1
    flag_again()
    Product.objects.bulk_create([Product(name=f"More {i}") for i in range(40)])
    assert dismiss_all() == few
    assert DuplicateDismissal.objects.count() == 1
