"""Embeddings computed by a real Celery worker over a real Redis broker."""

import pytest
from django.core.files.base import ContentFile

import visual_search
from visual_search.models import ImageEmbedding
from tests.conftest import catalogue_image
from tests.integration.conftest import wait_for
from tests.testapp.models import Product

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def settled(product, statuses=("ready", "failed")):
    row = ImageEmbedding.objects.for_object(product).first()
    return row if row is not None and row.status in statuses else None


def wait_settled(product, timeout=90):
    return wait_for(lambda: settled(product), timeout=timeout, what=f"embedding of {product}")


def test_worker_embeds_saved_changed_and_deleted_products(broker, start_worker, make_product, embed_calls):
    start_worker()
    product = make_product("Arla Standard Milk", catalogue_image("Arla-Standard-Milk"))
    assert ImageEmbedding.objects.for_object(product).get().status in ("pending", "ready")
    first = wait_settled(product)
    assert first.status == "ready" and len(first.array) == 512
    assert embed_calls == []  # the worker computed it, not this process

    # Saving again with the same image queues nothing and changes nothing.
    product.name = "Arla Standard Milk 1 l"
    product.save()
    assert ImageEmbedding.objects.for_object(product).get().updated_at == first.updated_at

    # A changed image is recomputed by the worker.
    product.image.save("new.jpg", ContentFile(catalogue_image("Oatly-Oat-Milk").read_bytes()))
    second = wait_for(
        lambda: (r := settled(product)) is not None and r.checksum != first.checksum and r, what="recomputed embedding"
    )
    assert second.status == "ready" and second.vector != first.vector

    # Search from this process finds the worker's vector first.
    results = visual_search.search_by_image(catalogue_image("Oatly-Oat-Milk").read_bytes(), Product, limit=1)
    assert results[0].object == product and results[0].score == pytest.approx(1.0, abs=1e-3)

    product.delete()
    assert not ImageEmbedding.objects.exists()


def test_a_corrupt_image_fails_while_the_rest_of_its_batch_is_ready(broker, start_worker, make_product):
    start_worker()
    names = ["Lemon", "Lime", "Mango", "Kiwi"]
    with visual_search.pause_indexing():  # one batch task on exit
        products = [make_product(n, catalogue_image(n)) for n in names]
        broken = make_product("Broken", catalogue_image("Banana").read_bytes()[:400])
    for product in products:
        assert wait_settled(product).status == "ready"
    row = wait_settled(broken)
    assert row.status == "failed" and "damaged or truncated" in row.error and row.vector is None
    query = catalogue_image("Mango").read_bytes()
    assert visual_search.search_by_image(query, Product, limit=1)[0].object.name == "Mango"


def test_duplicate_delivery_gives_one_embedding_and_the_same_result(broker, start_worker, make_product):
    from visual_search.tasks import embed_objects

    start_worker(concurrency=2)
    product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    first = wait_settled(product)
    results = [embed_objects.apply_async(args=("testapp.product", "image", [product.pk])) for _ in range(3)]
    outcomes = [r.get(timeout=90) for r in results]
    assert all(o["unchanged"] == 1 and o["embedded"] == 0 for o in outcomes)
    assert ImageEmbedding.objects.count() == 1
    assert ImageEmbedding.objects.get().vector == first.vector
