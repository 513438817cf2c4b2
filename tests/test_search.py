"""The Python API: search by photo and find similar, restricted, with stale vectors kept apart."""

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType

import visual_search
from visual_search.backends.numpy import NumpyBackend
from visual_search.serving import current_fingerprint
from visual_search.models import ImageEmbedding
from visual_search.reindex import reindex
from tests.conftest import catalogue_image
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Arla-Standard-Milk", "Oatly-Oat-Milk", "Lemon", "Banana", "Red-Delicious", "Tropicana-Apple-Juice"]


@pytest.fixture
def catalogue(make_product):
    return {name: make_product(name.replace("-", " "), catalogue_image(name), category=name[:4]) for name in NAMES}


def test_a_catalogue_image_finds_its_product_first(catalogue):
    for name, product in catalogue.items():
        results = visual_search.search_by_image(catalogue_image(name).read_bytes(), Product, limit=3)
        assert results[0].object == product
        assert results[0].score == pytest.approx(1.0, abs=1e-3)
        assert len(results) == 3 and results[0].score >= results[1].score >= results[2].score


def test_search_accepts_a_file_object(catalogue):
    with open(catalogue_image("Lemon"), "rb") as handle:
        assert visual_search.search_by_image(handle, Product, limit=1)[0].object == catalogue["Lemon"]


def test_find_similar_excludes_the_object_itself(catalogue):
    lemon = catalogue["Lemon"]
    results = visual_search.find_similar(lemon, limit=10)
    assert lemon not in [r.object for r in results]
    assert len(results) == len(NAMES) - 1


def test_search_restricted_to_a_queryset(catalogue):
    milk_only = Product.objects.filter(name__contains="Milk")
    results = visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), milk_only, limit=10)
    assert {r.object.name for r in results} == {"Arla Standard Milk", "Oatly Oat Milk"}
    similar = visual_search.find_similar(catalogue["Banana"], queryset=Product.objects.filter(in_stock=True), limit=2)
    assert len(similar) == 2


def test_unindexed_object_says_so(make_product):
    product = make_product("No image")
    with pytest.raises(visual_search.NotIndexed, match="no ready image embedding"):
        visual_search.find_similar(product)


def test_unregistered_model_says_how_to_register(db):
    from django.contrib.auth.models import User

    with pytest.raises(visual_search.NotSearchable, match="register it"):
        visual_search.search_by_image(b"x", User)


def test_searching_a_gallery_model_names_its_result_model(db):
    """ProductImage is registered with result="product": it said "register it", which it is."""
    from tests.testapp.models import ProductImage

    with pytest.raises(visual_search.NotSearchable, match=r"its images find Product objects.*search Product instead"):
        visual_search.search_by_image(b"x", ProductImage)


def test_vectors_of_another_fingerprint_are_stale_and_never_compared(catalogue, settings):
    before = current_fingerprint()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "POOLING": "avg"}
    assert current_fingerprint() != before
    assert visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), Product) == []
    assert ImageEmbedding.objects.stale(current_fingerprint()).count() == len(NAMES)
    reindex(Product, only=["stale"], asynchronous=False)
    assert ImageEmbedding.objects.ready(current_fingerprint()).count() == len(NAMES)
    assert visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), Product)[0].object == catalogue["Lemon"]


def test_a_process_sees_vectors_written_by_another_without_restart(catalogue, settings):
    """The NumPy backend reads committed rows: a web process sees what a worker just wrote."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    web = NumpyBackend()
    ct = ContentType.objects.get_for_model(Product).pk
    fingerprint = current_fingerprint()
    query = ImageEmbedding.objects.for_object(catalogue["Lemon"]).get().array
    assert web.search(query, result_type_id=ct, fingerprint=fingerprint, limit=1)[0].result_id == str(catalogue["Lemon"].pk)

    # "The worker" replaces Banana's vector by Lemon's, adds a product, and deletes Oatly.
    ImageEmbedding.objects.for_object(catalogue["Banana"]).update(vector=query.tobytes())
    ImageEmbedding.objects.for_object(catalogue["Oatly-Oat-Milk"]).delete()
    new = Product.objects.create(name="Later")
    ImageEmbedding.objects.create(
        content_type_id=ct, object_id=str(new.pk), field_name="image", result_type_id=ct, result_id=str(new.pk),
        status="ready", fingerprint=fingerprint, vector=(-query).tobytes(), dimensions=512,
    )
    hits = web.search(query, result_type_id=ct, fingerprint=fingerprint, limit=10)
    ids = [h.result_id for h in hits]
    assert set(ids[:2]) == {str(catalogue["Lemon"].pk), str(catalogue["Banana"].pk)}
    assert str(catalogue["Oatly-Oat-Milk"].pk) not in ids
    assert ids[-1] == str(new.pk) and hits[-1].score == pytest.approx(-1.0, abs=1e-4)


def test_best_per_result_returns_each_result_once_with_its_best_score():
    from visual_search.ranking import best_per_result

    # Best first, as a backend finds them; -inf: a vector no search may return.
    scores = np.array([0.95, 0.9, 0.5, 0.1, -np.inf])
    hits = best_per_result(["a", "a", "b", "a", "c"], scores, limit=5)
    assert [(h.result_id, h.score) for h in hits] == [("a", 0.95), ("b", 0.5)]


def test_query_expansion_keeps_the_exact_match_first_and_scores_sorted(catalogue, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "QUERY_EXPANSION": 2}
    results = visual_search.search_by_image(catalogue_image("Banana").read_bytes(), Product, limit=6)
    assert results[0].object == catalogue["Banana"]
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1.0


def test_freshness_is_checked_at_most_every_refresh_interval(catalogue, settings, django_assert_max_num_queries):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 60}
    web = NumpyBackend()
    ct = ContentType.objects.get_for_model(Product).pk
    query = ImageEmbedding.objects.for_object(catalogue["Lemon"]).get().array
    web.search(query, result_type_id=ct, fingerprint=current_fingerprint(), limit=1)
    with django_assert_max_num_queries(0):
        web.search(query, result_type_id=ct, fingerprint=current_fingerprint(), limit=1)


def test_a_shop_s_own_view_tells_a_catalogue_being_indexed_from_no_match(make_product):
    """The API answers 503 while the first vectors are on their way; a shop's own view had only
    an empty list, and the test for it was not public."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        make_product("Lime", catalogue_image("Lime"))
    assert visual_search.being_indexed(Product) is True
    reindex(asynchronous=False)
    assert visual_search.being_indexed(Product) is False
    assert "being_indexed" in visual_search.__all__


def test_every_error_the_python_api_is_documented_to_raise_is_importable_from_the_package():
    """README and docs/installation.md: search_by_image raises WeightsUnavailable (no weights) and
    VisibilityRuleError (a broken rule), but a shop's own view could catch them only by importing
    visual_search.exceptions and visual_search.registry, internal modules."""
    from visual_search.exceptions import VisualSearchError, WeightsUnavailable
    from visual_search.registry import VisibilityRuleError

    assert visual_search.WeightsUnavailable is WeightsUnavailable
    assert visual_search.VisibilityRuleError is VisibilityRuleError
    assert visual_search.VisualSearchError is VisualSearchError
    for name in ["InvalidImage", "ImageTooLarge", "UnsupportedFormat", "NotIndexed", "NotSearchable", "WeightsUnavailable"]:
        assert issubclass(getattr(visual_search, name), visual_search.VisualSearchError)
        assert name in visual_search.__all__
