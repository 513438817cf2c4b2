"""Saving, changing and deleting registered objects keeps their embeddings in step (in-process)."""

from dataclasses import dataclass

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import transaction

import visual_search
from visual_search.models import ImageEmbedding
from visual_search.registry import Registration
from visual_search.reindex import reindex, select_pks, status_counts
from visual_search.signals import SignalProcessor
from visual_search.tasks import sweep
from tests.conftest import catalogue_image, photos
from tests.testapp.models import DigitalProduct, FeaturedProduct, Product, ProductImage

pytestmark = pytest.mark.django_db(transaction=True)


def row(obj, field="image"):
    return ImageEmbedding.objects.for_object(obj).get(field_name=field)


def test_saved_product_gets_a_ready_unit_vector(make_product):
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    embedding = row(product)
    assert embedding.status == "ready"
    assert embedding.result_id == str(product.pk)
    assert len(embedding.checksum) == 64 and embedding.fingerprint
    vector = embedding.array
    assert vector.shape == (512,) and vector.dtype.name == "float32"
    assert abs(float((vector**2).sum()) - 1.0) < 1e-4


def test_a_child_of_a_registered_model_is_indexed_as_it(db):
    """Multi-table inheritance: Django sends a DigitalProduct's signals with DigitalProduct as the
    sender, never Product; the child was saved and left unindexed ("missing") for ever."""
    child = DigitalProduct(name="Banana e-book", download_url="https://example.com/banana")
    child.image.save("banana.jpg", ContentFile(catalogue_image("Banana").read_bytes()))
    embedding = ImageEmbedding.objects.for_object(child).get()
    assert embedding.status == "ready" and embedding.content_type.model == "product" and embedding.result_id == str(child.pk)
    found = visual_search.search_by_image(catalogue_image("Banana").read_bytes(), Product)
    assert found[0].object.pk == child.pk
    child.delete()
    assert not ImageEmbedding.objects.exists()


def test_a_key_longer_than_a_row_holds_is_logged_never_a_failed_save(db, settings, caplog):
    """An id of more than 64 characters failed the row's write: on PostgreSQL the shop's own save of
    the object (a DataError in its transaction), and in a reindex the whole batch, for ever."""
    from tests.testapp.models import Leaflet

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [{"model": "testapp.Leaflet", "image_field": "picture"}]}
    long, short = Leaflet(code="spring-" + "x" * 70), Leaflet(code="summer")
    long.picture.save("long.jpg", ContentFile(catalogue_image("Lemon").read_bytes()))
    short.picture.save("short.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    assert list(ImageEmbedding.objects.values_list("object_id", "status")) == [("summer", "ready")]
    assert "its key has 77 characters, and visual search stores ids of at most 64" in caplog.text
    from visual_search.reindex import reindex

    report = reindex(Leaflet, asynchronous=False, force=True)
    assert (report["embedded"], report["failed"]) == (1, 1)


def test_a_proxy_registered_on_its_own_is_indexed_whichever_class_saves(db, settings):
    """A proxy's rows are its concrete model's: registered alone, saves through the proxy found no
    registration (labels compared), and saves through the concrete class were never connected."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [{"model": "testapp.FeaturedProduct", "image_field": "image"}]}
    featured, plain = FeaturedProduct(name="Lemon"), Product(name="Lime")
    featured.image.save("lemon.jpg", ContentFile(catalogue_image("Lemon").read_bytes()))
    plain.image.save("lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    assert ImageEmbedding.objects.for_object(featured).get().status == "ready"
    assert ImageEmbedding.objects.for_object(plain).get().status == "ready"
    found = visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), FeaturedProduct)
    assert found[0].object.name == "Lemon" and isinstance(found[0].object, FeaturedProduct)
    plain.delete()
    assert ImageEmbedding.objects.count() == 1


def test_saving_again_with_the_same_image_computes_nothing(make_product, embed_calls):
    product = make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    before = row(product).updated_at
    assert sum(embed_calls) == 1
    product.name = "Oatly Oat Milk 1 l"
    product.save()
    Product.objects.get(pk=product.pk).save()
    assert sum(embed_calls) == 1
    assert row(product).updated_at == before


def test_changing_the_image_recomputes(make_product):
    product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    first = row(product)
    product.image.save("other.jpg", ContentFile(catalogue_image("Granny-Smith").read_bytes()))
    second = row(product)
    assert second.status == "ready"
    assert second.checksum != first.checksum
    assert second.vector != first.vector


def test_update_fields_without_the_image_schedules_nothing(make_product, embed_calls):
    product = make_product("Lemon", catalogue_image("Lemon"))
    product.image.name = "elsewhere.jpg"  # not saved: update_fields leaves the column alone
    product.save(update_fields=["name"])
    assert sum(embed_calls) == 1 and row(product).status == "ready"


def test_deleting_removes_the_vectors(make_product):
    product = make_product("Banana", catalogue_image("Banana"))
    gallery = ProductImage(product=product)
    gallery.image.save("b.jpg", ContentFile(photos()["Banana"][0].read_bytes()))
    assert ImageEmbedding.objects.for_result(product).count() == 2
    product.delete()
    assert ImageEmbedding.objects.count() == 0


def test_clearing_the_image_removes_the_vector(make_product):
    product = make_product("Kiwi", catalogue_image("Kiwi"))
    product.image = None
    product.save()
    assert not ImageEmbedding.objects.for_object(product).exists()


def test_rolled_back_save_schedules_nothing(make_product, embed_calls):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_product("Ghost", catalogue_image("Lime"))
        raise RuntimeError("roll back")
    assert embed_calls == []
    assert ImageEmbedding.objects.count() == 0


def test_fixture_loading_is_skipped(tmp_path, embed_calls, settings):
    fixture = tmp_path / "products.json"
    fixture.write_text('[{"model": "testapp.product", "pk": 7, "fields": {"name": "Raw", "image": "products/raw.jpg"}}]')
    call_command("loaddata", str(fixture), verbosity=0)
    assert Product.objects.filter(pk=7).exists()
    assert embed_calls == [] and ImageEmbedding.objects.count() == 0


def test_corrupt_image_fails_with_a_reason_and_the_batch_goes_on(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}
    with visual_search.pause_indexing(reindex_on_exit=False):
        good = [make_product(f"Good {n}", catalogue_image(name)) for n, name in enumerate(["Lemon", "Lime", "Mango"])]
        bad = make_product("Broken", catalogue_image("Kiwi").read_bytes()[:300])
        html = make_product("Html", b"<html><body>not a photo</body></html>")
    call_command("visual_search_reindex", "testapp.Product", verbosity=0)
    for product in good:
        assert row(product).status == "ready"
    for product in (bad, html):
        embedding = row(product)
        assert embedding.status == "failed" and embedding.vector is None
        assert embedding.error
    assert "damaged or truncated" in row(bad).error
    assert "Error" in row(bad).error  # staff read what the decoder said (a customer's search does not)
    assert "not an image" in row(html).error


def test_pause_indexing_queues_in_batches_on_exit(make_product, embed_calls, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 4}
    with visual_search.pause_indexing():
        products = [make_product(name, catalogue_image(name)) for name in ["Lemon", "Lime", "Mango", "Kiwi", "Banana"]]
        assert embed_calls == []
        assert {row(p).status for p in products} == {"pending"}
    assert embed_calls == [4, 1]
    assert {row(p).status for p in products} == {"ready"}


class RecordingProcessor(SignalProcessor):
    scheduled: list = []

    def schedule(self, label, image_field, pks):
        RecordingProcessor.scheduled.append((label, image_field, list(pks)))
        super().schedule(label, image_field, pks)


def test_pause_indexing_queues_through_the_processors_schedule(make_product, settings):
    """docs/installation.md: a shop overrides SignalProcessor.schedule() to change how work is
    queued; the bulk import's queueing on exit went around it, straight to the queue."""
    RecordingProcessor.scheduled = []
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SIGNAL_PROCESSOR": "tests.test_indexing.RecordingProcessor"}
    with visual_search.pause_indexing():
        products = [make_product(name, catalogue_image(name)) for name in ["Lemon", "Lime"]]
    assert RecordingProcessor.scheduled == [("testapp.product", "image", [p.pk for p in products])]
    assert {row(p).status for p in products} == {"ready"}


def test_pause_indexing_as_a_decorator_embeds_nothing(make_product, embed_calls):
    """How a shop's own test that imports products skips embedding (docs/installation.md)."""

    @visual_search.pause_indexing(reindex_on_exit=False)
    def import_feed():
        return [make_product(name, catalogue_image(name)) for name in ["Lemon", "Lime"]]

    products = import_feed()
    assert embed_calls == [] and {row(p).status for p in products} == {"pending"}
    later = make_product("Mango", catalogue_image("Mango"))  # outside it, indexing is back
    assert embed_calls == [1] and row(later).status == "ready"


def test_gallery_images_of_one_product_make_one_result_scored_by_the_best(make_product):
    milk = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    for path in photos()["Arla-Standard-Milk"][:3]:
        ProductImage(product=milk).image.save(path.name, ContentFile(path.read_bytes()))
    make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    query = photos()["Arla-Standard-Milk"][1].read_bytes()
    results = visual_search.search_by_image(query, Product, limit=5)
    assert [r.object for r in results].count(milk) == 1
    assert results[0].object == milk and results[0].score == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("update_fields", [None, ["product"]])
def test_a_gallery_image_moved_to_another_product_stands_for_that_product(make_product, update_fields):
    """Only the foreign key changes (two products merged, a photo filed under the wrong one): the
    rows said the old product, so a customer's photo of it kept finding the product it left."""
    oatly = make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    arla = make_product("Arla Standard Milk")  # no image of its own: the moved photo is its only one
    shelf = ProductImage(product=oatly)
    shelf.image.save("shelf.jpg", ContentFile(photos()["Arla-Standard-Milk"][0].read_bytes()))
    assert row(shelf).result_id == str(oatly.pk)
    query = photos()["Arla-Standard-Milk"][0].read_bytes()
    assert visual_search.search_by_image(query, Product, limit=1)[0].object == oatly

    moved = ProductImage.objects.get(pk=shelf.pk)  # loaded as a shop's form or admin would
    moved.product = arla
    moved.save(update_fields=update_fields)
    assert row(moved).result_id == str(arla.pk) and row(moved).status == "ready"
    first = visual_search.search_by_image(query, Product, limit=1)[0]
    assert first.object == arla and first.score == pytest.approx(1.0, abs=1e-3)


def test_a_move_no_signal_saw_is_picked_up_by_a_reindex_without_recomputing(make_product, embed_calls):
    """QuerySet.update() sends no signal: a reindex finds the image unchanged and the result moved,
    and the index (here NumPy's matrix, in other processes too) learns the new result."""
    oatly = make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    arla = make_product("Arla Standard Milk")
    shelf = ProductImage(product=oatly)
    shelf.image.save("shelf.jpg", ContentFile(photos()["Arla-Standard-Milk"][0].read_bytes()))
    query = photos()["Arla-Standard-Milk"][0].read_bytes()
    assert visual_search.search_by_image(query, Product, limit=1)[0].object == oatly
    ProductImage.objects.filter(pk=shelf.pk).update(product=arla)
    before = sum(embed_calls)
    call_command("visual_search_reindex", "testapp.ProductImage", stdout=__import__("io").StringIO())
    assert sum(embed_calls) == before  # nothing recomputed
    assert row(shelf).result_id == str(arla.pk)
    assert visual_search.search_by_image(query, Product, limit=1)[0].object == arla


def test_saving_a_gallery_image_unchanged_computes_nothing(make_product, embed_calls):
    oatly = make_product("Oatly Oat Milk", catalogue_image("Oatly-Oat-Milk"))
    shelf = ProductImage(product=oatly)
    shelf.image.save("shelf.jpg", ContentFile(photos()["Oatly-Oat-Milk"][0].read_bytes()))
    before = sum(embed_calls)
    ProductImage.objects.get(pk=shelf.pk).save()
    assert sum(embed_calls) == before


def test_stored_images_too_big_fail_without_decoding(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_PIXELS": 100}
    product = make_product("Huge", catalogue_image("Lemon"))
    assert row(product).status == "failed"
    assert "pixels" in row(product).error


@dataclass(frozen=True)
class InStockImages(Registration):
    """A shop's registration whose out-of-stock products take no part in search."""

    def searchable(self):
        return self.model._default_manager.filter(in_stock=True)

    def is_searchable(self, obj) -> bool:
        return obj.in_stock


@pytest.fixture
def in_stock_only(db):
    yield visual_search.register(Product, "image", registration_class=InStockImages)
    visual_search.unregister(Product, "image")


def test_images_out_of_a_registrations_searchable_objects_have_no_rows(make_product, in_stock_only):
    """``Registration.searchable()``: a save, a reindex and the sweep index those objects only, drop
    the rows of the others, and count none of them missing; one that comes back is indexed again."""
    lime = make_product("Lime", catalogue_image("Lime"), in_stock=False)
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    assert not ImageEmbedding.objects.for_object(lime).exists() and row(lemon).status == "ready"
    assert select_pks(in_stock_only, ["missing"]) == [] and status_counts()[0]["objects"] == 1
    assert reindex(Product, asynchronous=False, force=True)["embedded"] == 1

    Product.objects.filter(pk=lemon.pk).update(in_stock=False)  # no signal: a reindex or the sweep catches up
    assert reindex(Product, only=["missing"], asynchronous=False)["removed"] == 1
    assert not ImageEmbedding.objects.for_object(lemon).exists()
    Product.objects.filter(pk=lime.pk).update(in_stock=True)
    sweep(older_than=0)
    assert row(lime).status == "ready"
    found = visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), Product)
    assert [r.object.pk for r in found] == [lime.pk]
