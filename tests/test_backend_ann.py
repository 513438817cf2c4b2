"""The FAISS ANN backend: agrees with the exact NumPy backend, follows the rows, persists, rebuilds."""

import io
import sys

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

import visual_search
from tests.testapp.models import Product
from visual_search.backends import get_backend
from visual_search.backends.faiss import FaissBackend
from visual_search.backends.numpy import NumpyBackend
from visual_search.serving import current_fingerprint
from visual_search.models import ImageEmbedding, Whitening
from visual_search.ranking import fit_whitening

pytest.importorskip("faiss")
pytestmark = pytest.mark.django_db(transaction=True)
DIMS = 64


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}


@pytest.fixture
def index_dir(tmp_path):
    return tmp_path / "index"


def clustered(n, seed=0, centres=40):
    """Unit vectors in Gaussian clusters, like photos of similar products (not uniform noise)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, DIMS)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] / np.sqrt(DIMS) * 3 + rng.standard_normal((n, DIMS)).astype(np.float32) / np.sqrt(DIMS)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def synthetic(db):
    """2,000 stored vectors, two images per result id (so results must be deduplicated)."""
    ct = ContentType.objects.get_for_model(Product)
    vectors = clustered(2000)
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(
            content_type=ct, object_id=str(i), field_name="image", result_type=ct, result_id=str(i // 2),
            status="ready", fingerprint=current_fingerprint(), dimensions=DIMS, vector=v.tobytes(),
        )
        for i, v in enumerate(vectors)
    )
    return {"result_type_id": ct.pk, "fingerprint": current_fingerprint()}


def ann(index_dir, **options):
    return FaissBackend(PATH=str(index_dir), **options)


def ids(hits):
    return [h.result_id for h in hits]


def same(hit, other):
    return hit.result_id == other.result_id and hit.score == pytest.approx(other.score, abs=1e-5)


def test_agrees_with_the_exact_backend(synthetic, index_dir, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "QUERY_EXPANSION": 3}
    backend, exact = ann(index_dir), NumpyBackend()
    overlap = []
    for query in clustered(20, seed=1):
        found, truth = backend.search(query, limit=10, **synthetic), exact.search(query, limit=10, **synthetic)
        assert len(found) == 10 and len(set(ids(found))) == 10  # each result once
        assert same(found[0], truth[0])  # same best result, same score
        overlap.append(len(set(ids(found)) & set(ids(truth))) / 10)
    assert backend._indexes[next(iter(backend._indexes))].nlist > 1  # really clustered, not a flat scan
    assert np.mean(overlap) >= 0.9


def test_rows_added_updated_and_removed_are_visible(synthetic, index_dir):
    backend = ann(index_dir)
    query = clustered(1, seed=2)[0]
    backend.search(query, limit=5, **synthetic)
    ct = synthetic["result_type_id"]
    # Written "by a worker": a new result with the query's vector, and an existing one moved there.
    new = ImageEmbedding.objects.create(
        content_type_id=ct, object_id="new", field_name="image", result_type_id=ct, result_id="new",
        status="ready", fingerprint=synthetic["fingerprint"], dimensions=DIMS, vector=query.tobytes(),
    )
    ImageEmbedding.objects.filter(object_id="10").update(vector=query.tobytes())  # result "5"
    hits = backend.search(query, limit=3, **synthetic)
    assert set(ids(hits[:2])) == {"new", "5"} and hits[0].score == pytest.approx(1.0, abs=1e-5)
    ImageEmbedding.objects.filter(pk=new.pk).delete()
    ImageEmbedding.objects.filter(object_id="11").delete()  # result "5" keeps its other image
    assert "new" not in ids(backend.search(query, limit=10, **synthetic))
    # The writing process's own add/remove apply at once, before any freshness check.
    row = ImageEmbedding.objects.get(object_id="10")
    backend.remove([row.pk])
    state = backend._indexes[(ct, synthetic["fingerprint"])]
    assert row.pk not in state.ids and state.index.ntotal == len(state.ids)
    backend.add([row])
    assert row.pk in state.ids and state.index.ntotal == len(state.ids)


def test_a_new_process_loads_the_saved_index_without_clustering_again(synthetic, index_dir, monkeypatch):
    query = clustered(1, seed=3)[0]
    before = ann(index_dir).search(query, limit=10, **synthetic)
    assert list(index_dir.glob("*.faiss"))

    def no_build(*args, **kwargs):
        raise AssertionError("built again instead of loading the file")

    later = ann(index_dir)
    monkeypatch.setattr(later, "_build", no_build)
    assert later.search(query, limit=10, **synthetic) == before
    assert later._indexes[(synthetic["result_type_id"], synthetic["fingerprint"])].index.ntotal == 2000


def test_an_unreadable_file_is_built_again(synthetic, index_dir, caplog):
    query = clustered(1, seed=11)[0]
    before = ann(index_dir).search(query, limit=5, **synthetic)
    (saved,) = index_dir.glob("*.faiss")
    saved.write_bytes(saved.read_bytes()[:5000])  # a disk that filled up, a copy cut short
    assert ann(index_dir).search(query, limit=5, **synthetic) == before
    assert "unreadable FAISS index" in caplog.text
    assert saved.stat().st_size > 5000 and not list(index_dir.glob(".tmp-*"))


def test_a_process_picks_up_an_index_another_process_rebuilt(synthetic, index_dir):
    web, other = ann(index_dir), ann(index_dir)
    query = clustered(1, seed=4)[0]
    web.search(query, limit=3, **synthetic)
    key = (synthetic["result_type_id"], synthetic["fingerprint"])
    loaded = web._indexes[key].file
    other.rebuild(ImageEmbedding.objects.ready(synthetic["fingerprint"]))
    web.search(query, limit=3, **synthetic)
    assert web._indexes[key].file != loaded and web._indexes[key].file == other._indexes[key].file


def test_a_new_whitening_rebuilds_the_index(synthetic, index_dir):
    backend, exact = ann(index_dir), NumpyBackend()
    query = clustered(1, seed=5)[0]
    backend.search(query, limit=10, **synthetic)
    vectors = np.stack([row.array for row in ImageEmbedding.objects.all()])
    mean, projection = fit_whitening(vectors, 16)
    Whitening.objects.create(
        result_type_id=synthetic["result_type_id"], fingerprint=synthetic["fingerprint"], dimensions=16,
        trained_on=len(vectors), mean=mean.tobytes(), projection=projection.tobytes(),
    )
    found, truth = backend.search(query, limit=10, **synthetic), exact.search(query, limit=10, **synthetic)
    assert backend._indexes[(synthetic["result_type_id"], synthetic["fingerprint"])].index.d == 16
    assert same(found[0], truth[0])
    assert len(set(ids(found)) & set(ids(truth))) >= 8


def test_a_selective_restriction_still_gives_a_full_top_k(synthetic, index_dir):
    backend, exact = ann(index_dir, NPROBE=1), NumpyBackend()
    query = clustered(1, seed=6)[0]
    for allowed in ({str(i) for i in range(0, 1000, 50)}, {str(i) for i in range(0, 1000, 2)}):
        found = backend.search(query, limit=10, restrict_to=allowed, **synthetic)
        truth = exact.search(query, limit=10, restrict_to=allowed, **synthetic)
        assert len(found) == 10 and set(ids(found)) <= allowed
        assert same(found[0], truth[0])
    few = {"3", "7"}
    assert set(ids(backend.search(query, limit=10, restrict_to=few, **synthetic))) == few
    hits = backend.search(query, limit=10, exclude={ids(truth)[0]}, **synthetic)
    assert ids(truth)[0] not in ids(hits) and len(hits) == 10


@pytest.fixture
def shop(db, settings, index_dir, monkeypatch):
    """Products whose vectors are stored (as reindex left them), an "ann" backend beside the default,
    and VGG16 out of reach: anything that would recompute an embedding fails the test."""
    from visual_search import serving
    from visual_search.embeddings import extractor

    def no_vgg16(*args, **kwargs):
        raise AssertionError("an embedding was recomputed")

    monkeypatch.setattr(extractor.Extractor, "embed_arrays", no_vgg16)
    monkeypatch.setattr(serving, "get_extractor", no_vgg16)
    ct = ContentType.objects.get_for_model(Product)
    products = [Product.objects.create(name=f"P{i}") for i in range(40)]
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(
            content_type=ct, object_id=str(p.pk), field_name="image", result_type=ct, result_id=str(p.pk), status="ready",
            checksum=f"{i:064x}", fingerprint=current_fingerprint(), dimensions=DIMS, vector=v.tobytes(),
        )
        for i, (p, v) in enumerate(zip(products, clustered(len(products), seed=7)))
    )
    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH,
        "BACKENDS": {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend"},
                     "ann": {"BACKEND": "visual_search.backends.faiss.FaissBackend", "OPTIONS": {"PATH": str(index_dir)}}},
    }
    return products


def test_rebuild_command_fills_the_new_backend_without_recomputing(shop, settings):
    before = list(ImageEmbedding.objects.order_by("pk").values_list("pk", "checksum", "vector", "updated_at"))
    expected = visual_search.find_similar(shop[0], limit=5)
    out, err = io.StringIO(), io.StringIO()
    call_command("visual_search_rebuild_index", "--backend", "ann", stdout=out, stderr=err)
    assert "'ann' (visual_search.backends.faiss.FaissBackend) filled: 40 stored vectors" in out.getvalue()
    assert "No embedding was recomputed" in out.getvalue() and "40/40" in err.getvalue()
    assert list(ImageEmbedding.objects.order_by("pk").values_list("pk", "checksum", "vector", "updated_at")) == before
    # Switching is a settings change: the new backend answers like the old one.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BACKENDS": {"default": settings.VISUAL_SEARCH["BACKENDS"]["ann"]}}
    assert isinstance(get_backend(), FaissBackend)
    found = visual_search.find_similar(shop[0], limit=5)
    assert [r.object for r in found] == [r.object for r in expected]
    assert [r.score for r in found] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_rebuild_command_of_one_model_and_of_the_numpy_backend(shop):
    out = io.StringIO()
    call_command("visual_search_rebuild_index", "--backend", "ann", "--model", "testapp.Product", stdout=out, stderr=io.StringIO())
    assert "filled: 40 stored vectors of testapp.Product" in out.getvalue()
    out = io.StringIO()
    call_command("visual_search_rebuild_index", stdout=out, stderr=io.StringIO())
    assert "read from the database on each search: 40 stored vectors" in out.getvalue()
    with pytest.raises(CommandError, match="not searchable"):
        call_command("visual_search_rebuild_index", "--model", "auth.User")


def test_rebuild_command_names_the_configured_aliases(shop):
    with pytest.raises(CommandError, match=r"No backend 'elastic' in VISUAL_SEARCH\['BACKENDS'\] \(configured: 'default', 'ann'\)"):
        call_command("visual_search_rebuild_index", "--backend", "elastic")


def test_missing_faiss_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImproperlyConfigured, match=r"pip install django-visual-search\[ann\]"):
        FaissBackend()


def test_clusters_are_learned_again_when_the_catalogue_doubles(synthetic, index_dir):
    ImageEmbedding.objects.filter(pk__in=list(ImageEmbedding.objects.values_list("pk", flat=True)[:1200])).delete()
    backend = ann(index_dir)
    query = clustered(1, seed=8)[0]
    backend.search(query, limit=3, **synthetic)
    state = backend._indexes[(synthetic["result_type_id"], synthetic["fingerprint"])]
    assert state.trained_on == 800 and state.nlist == 1  # too few to cluster: one exact list
    ct = synthetic["result_type_id"]
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(
            content_type_id=ct, object_id=f"more{i}", field_name="image", result_type_id=ct, result_id=f"more{i}",
            status="ready", fingerprint=synthetic["fingerprint"], dimensions=DIMS, vector=v.tobytes(),
        )
        for i, v in enumerate(clustered(1000, seed=9))
    )
    backend.search(query, limit=3, **synthetic)
    state = backend._indexes[(synthetic["result_type_id"], synthetic["fingerprint"])]
    assert state.trained_on == 1800 and state.nlist > 1 and state.index.ntotal == 1800


def test_searches_in_threads_while_the_index_changes(synthetic, index_dir):
    import threading

    backend = ann(index_dir)
    queries = clustered(10, seed=10)
    backend.search(queries[0], limit=5, **synthetic)
    rows = list(ImageEmbedding.objects.all()[:200])
    errors = []

    def search():
        try:
            for _ in range(8):
                for query in queries:
                    assert len(backend.search(query, limit=5, **synthetic)) == 5
        except (AssertionError, RuntimeError, ValueError, IndexError) as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    for n in range(20):
        backend.remove([row.pk for row in rows[n * 10 : n * 10 + 10]])
        backend.add(rows[n * 10 : n * 10 + 10])
    for thread in threads:
        thread.join()
    assert errors == []
