"""The pgvector backend against a real PostgreSQL 16 with the vector extension.

The ``pgserver`` wheel (requirements.txt) bundles both; the module starts one server in a temporary
folder and adds it as a second database alias, ``pgvector``, while the rest of the suite stays on
SQLite. A router sends this module's queries there, so the NumPy backend reads the very same rows
and the two backends can be compared result for result.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.utils import override_settings

from tests.postgres import database_settings
from visual_search.backends.numpy import NumpyBackend

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(databases=["default", "pgvector", "pgvector_other"], transaction=True)]

DIMS = 64  # the backend does not care; small vectors keep the HNSW builds quick


class ToPostgres:
    """Every query of this module goes to the PostgreSQL alias."""

    def db_for_read(self, model, **hints):
        return "pgvector"

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return True


@pytest.fixture(scope="module", autouse=True)
def postgres(tmp_path_factory, django_db_setup, django_db_blocker):
    try:
        import pgserver
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pgserver is not installed: pip install -r requirements.txt")
        pytest.skip("pgserver is not installed: pip install -r requirements.txt")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    config = database_settings(server.get_uri())
    added = {"pgvector": config, "pgvector_other": dict(config)}  # two aliases: two connections
    configured = connections.configure_settings({"default": connections.settings["default"], **added})
    for alias in added:
        connections.settings[alias] = configured[alias]
    with django_db_blocker.unblock():
        from django.core.management import call_command

        call_command("migrate", database="pgvector", verbosity=0)
    with override_settings(DATABASE_ROUTERS=[ToPostgres()]):
        yield server
    for alias in added:
        connections[alias].close()
        del connections.settings[alias]
    server.cleanup()


@pytest.fixture
def pg_backend(settings):
    """The pgvector backend as a shop configures it, emptied before and after each test."""
    from visual_search.backends import get_backend

    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH,
        "BACKENDS": {"default": {"BACKEND": "visual_search.backends.pgvector.PgvectorBackend",
                                 "OPTIONS": {"using": "pgvector", "ef_search": 200}}},
    }
    backend = get_backend()
    backend.reset()
    backend.finish()
    yield backend
    backend.reset()
    backend.finish()


def clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Unit vectors in Gaussian clusters, the way product photos bunch by kind."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIMS)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, DIMS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def store(vectors: np.ndarray, result_ids=None, start: int = 0, fingerprint: str | None = None) -> list:
    """Ready ImageEmbedding rows (one image each, result ``str(i)`` unless given) for Product, of
    the fingerprint in use unless given."""
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Product
    from visual_search.serving import current_fingerprint
    from visual_search.models import ImageEmbedding

    ct = ContentType.objects.get_for_model(Product)
    fingerprint = fingerprint or current_fingerprint()
    rows = [
        ImageEmbedding(content_type=ct, object_id=str(start + i), field_name="image", result_type=ct,
                       result_id=str(result_ids[i] if result_ids is not None else start + i), status="ready",
                       fingerprint=fingerprint, dimensions=DIMS, vector=v.astype(np.float32).tobytes())
        for i, v in enumerate(vectors)
    ]
    return ImageEmbedding.objects.bulk_create(rows, batch_size=1000)


def search_kwargs(**extra) -> dict:
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Product
    from visual_search.serving import current_fingerprint

    return {"result_type_id": ContentType.objects.get_for_model(Product).pk, "fingerprint": current_fingerprint(), "limit": 10, **extra}


def ids(hits) -> list[str]:
    return [h.result_id for h in hits]


def fit_whitening(dims: int = 32):
    from tests.testapp.models import Product
    from visual_search.whitening import fit

    with override_settings(VISUAL_SEARCH={**_visual_search(), "WHITENING_DIMS": dims, "WHITENING_MIN_VECTORS": 50}):
        return fit(Product)


def _visual_search() -> dict:
    from django.conf import settings

    return settings.VISUAL_SEARCH


@pytest.mark.parametrize("expansion", [0, 3])
def test_same_results_as_the_numpy_backend(pg_backend, settings, expansion):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "QUERY_EXPANSION": expansion, "WHITENING_MIN_VECTORS": 50,
                              "WHITENING_DIMS": 32}
    vectors = clustered(1000)
    # Every third result has a second image: results must come once, scored by their best image.
    rows = store(vectors, result_ids=[i - i % 3 if i % 3 == 1 else i for i in range(len(vectors))])
    fit_whitening()
    pg_backend.add(rows)
    exact = NumpyBackend()
    queries = clustered(20, seed=1)
    for query in queries:
        got, want = pg_backend.search(query, **search_kwargs()), exact.search(query, **search_kwargs())
        assert ids(got) == ids(want)
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
        assert len(set(ids(got))) == 10


def test_writes_are_seen_through_another_connection(pg_backend):
    from visual_search.backends.pgvector import PgvectorBackend
    from visual_search.models import ImageEmbedding

    other = PgvectorBackend(using="pgvector_other")  # another process, as far as PostgreSQL knows
    vectors = clustered(300)
    rows = store(vectors)
    pg_backend.add(rows)
    assert ids(other.search(vectors[7], **search_kwargs(limit=1))) == ["7"]

    # The image of product 7 changed: a new vector, written by a worker.
    rows[7].vector = vectors[8].tobytes()
    rows[7].save()
    pg_backend.add([rows[7]])
    assert set(ids(other.search(vectors[8], **search_kwargs(limit=2)))) == {"7", "8"}

    pg_backend.remove([rows[8].pk])
    assert "8" not in ids(other.search(vectors[8], **search_kwargs()))

    # A row gone pending is never searched, even before (or without) its remove().
    ImageEmbedding.objects.filter(pk=rows[9].pk).update(status="pending")
    assert "9" not in ids(other.search(vectors[9], **search_kwargs()))
    # A row deleted outright neither.
    ImageEmbedding.objects.filter(pk=rows[10].pk).delete()
    assert "10" not in ids(other.search(vectors[10], **search_kwargs()))


@pytest.mark.parametrize("exact_max_rows", [20_000, 0])
def test_a_selective_restriction_still_gives_a_full_top_k(pg_backend, exact_max_rows):
    """1 % of the results allowed: answered exactly, or (exact_max_rows=0) by a widened HNSW
    scan that falls back to exact when the filter leaves too few candidates."""
    from visual_search.backends.pgvector import PgvectorBackend

    backend = PgvectorBackend(using="pgvector", exact_max_rows=exact_max_rows, ef_search=40)
    vectors = clustered(3000)
    backend.reset()
    backend.add(store(vectors))
    backend.finish()
    allowed = [str(i) for i in np.random.default_rng(2).choice(3000, 30, replace=False)]
    exact = NumpyBackend()
    for query in clustered(5, seed=3):
        got = backend.search(query, **search_kwargs(restrict_to=allowed, exclude=allowed[:1]))
        assert len(got) == 10
        assert set(ids(got)) <= set(allowed[1:])
        assert ids(got) == ids(exact.search(query, **search_kwargs(restrict_to=allowed, exclude=allowed[:1])))


def test_search_vector_with_a_filtered_queryset(pg_backend):
    from tests.testapp.models import Product
    from visual_search.search import search_vector

    products = Product.objects.bulk_create(
        [Product(name=f"P{i}", category="shoes" if i % 50 == 0 else "other") for i in range(1000)]
    )
    vectors = clustered(1000)
    pg_backend.add(store(vectors, result_ids=[p.pk for p in products]))
    results = search_vector(vectors[0], Product.objects.filter(category="shoes"), limit=10)
    assert len(results) == 10
    assert results[0].object == products[0]
    assert {r.object.category for r in results} == {"shoes"}


def test_a_whitening_refit_rewrites_the_vectors_and_swaps_atomically(pg_backend, settings):
    from visual_search.backends.pgvector import PgvectorBackend, schema

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 50}
    other = PgvectorBackend(using="pgvector_other")
    vectors = clustered(800)
    rows = store(vectors)
    pg_backend.add(rows)
    query = clustered(1, seed=5)[0]
    other.search(query, **search_kwargs())  # caches the unwhitened generation
    with connections["pgvector"].cursor() as cursor:
        cursor.execute(f"SELECT id FROM {schema.GENERATIONS}")
        before = {r[0] for r in cursor.fetchall()}

    fit_whitening(dims=16)  # calls backend.whitening_changed(): the next generation, then the swap

    with connections["pgvector"].cursor() as cursor:
        cursor.execute(f"SELECT id, dimensions, state FROM {schema.GENERATIONS}")
        after = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '^visual_search_pgvector_[0-9]+$'")
        tables = cursor.fetchone()[0]
    assert len(after) == 1 and after[0][0] not in before and after[0][1:] == (16, "live")
    assert tables == 1  # the live generation's vectors: the old table is dropped
    exact = NumpyBackend()
    assert ids(other.search(query, **search_kwargs())) == ids(exact.search(query, **search_kwargs()))


def test_rebuild_reset_add_in_chunks_then_finish(pg_backend):
    from visual_search.backends.pgvector import schema

    vectors = clustered(3000)
    rows = store(vectors)
    pg_backend.reset()
    for start in range(0, len(rows), 1000):
        pg_backend.add(rows[start : start + 1000])
    with connections["pgvector"].cursor() as cursor:
        cursor.execute(f"SELECT indexed FROM {schema.GENERATIONS}")
        assert cursor.fetchall() == [(False,)]  # one graph build at the end, not 3,000 inserts
    assert ids(pg_backend.search(vectors[5], **search_kwargs(limit=1))) == ["5"]  # exact meanwhile
    pg_backend.finish()
    with connections["pgvector"].cursor() as cursor:
        cursor.execute(f"SELECT id, indexed FROM {schema.GENERATIONS}")
        (generation_id, indexed), = cursor.fetchall()
        assert indexed
        cursor.execute(f"SELECT count(*) FROM {schema.vectors_table(generation_id)}")
        assert cursor.fetchone()[0] == 3000
    exact = NumpyBackend()
    for query in clustered(5, seed=7):
        assert ids(pg_backend.search(query, **search_kwargs())) == ids(exact.search(query, **search_kwargs()))


def test_sqlite_is_refused_with_what_to_do():
    from visual_search.backends.pgvector import PgvectorBackend

    with pytest.raises(ImproperlyConfigured, match="needs a PostgreSQL database.*NumpyBackend"):
        PgvectorBackend(using="default")


def test_tables_exist_on_postgresql_only():
    assert "visual_search_pgvector_generation" in connections["pgvector"].introspection.table_names()
    assert "visual_search_pgvector_generation" not in connections["default"].introspection.table_names()


def test_a_version_switch_gives_pgvector_the_target_versions_vectors(pg_backend):
    """A rollback target's rows were never handed to pgvector again (or a rebuild dropped them):
    the switch fills its generation from the rows before search moves to it."""
    from visual_search import versions

    vectors = clustered(300)
    store(vectors)  # ready rows, never add()ed to the backend
    assert pg_backend.search(vectors[3], **search_kwargs(limit=1)) == []
    versions._fill_backend(search_kwargs()["fingerprint"], skip=set())
    assert ids(pg_backend.search(vectors[3], **search_kwargs(limit=1))) == ["3"]


def _generations() -> tuple[list[tuple[str, str, bool]], int]:
    """``(fingerprint, state, has its table)`` of every generation listed, and how many vector tables exist."""
    from visual_search.backends.pgvector import schema

    with connections["pgvector"].cursor() as cursor:
        cursor.execute(
            f"SELECT fingerprint, state, to_regclass('visual_search_pgvector_' || id) IS NOT NULL FROM {schema.GENERATIONS}"
            " ORDER BY fingerprint, state"
        )
        listed = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '^visual_search_pgvector_[0-9]+$'")
        return listed, cursor.fetchone()[0]


def test_prune_drops_the_tables_of_pruned_fingerprints_only(pg_backend):
    """`visual_search_versions prune` deletes a retired version's rows; its generations (one table
    each) go too, or every retired version's vectors would stay in PostgreSQL for ever. Never those
    of the fingerprint in use or of a version being built, live or building (a refit half-way)."""
    import io

    from django.core.management import call_command
    from django.db import transaction

    from visual_search.backends.pgvector import PgvectorBackend
    from visual_search.models import ModelVersion

    kwargs = search_kwargs(limit=1)
    current, retired, building = kwargs["fingerprint"], "a" * 32, "b" * 32
    vectors = clustered(300)
    pg_backend.add(store(vectors))
    pg_backend.add(store(vectors[:100], fingerprint=retired))
    pg_backend.add(store(vectors[:50], fingerprint=building))
    ModelVersion.objects.create(label="Next", status="building", fingerprint=building)
    with transaction.atomic(using="pgvector"), pg_backend._cursor() as cursor:
        # Whitening refits half-way: of the version in use, and of the retired one.
        pg_backend._create(cursor, kwargs["result_type_id"], current, DIMS, state="building")
        pg_backend._create(cursor, kwargs["result_type_id"], retired, DIMS, state="building")
    other = PgvectorBackend(using="pgvector_other")  # another process, which searched the retired version
    assert ids(other.search(vectors[3], **{**kwargs, "fingerprint": retired})) == ["3"]
    assert _generations()[1] == 5

    out = io.StringIO()
    call_command("visual_search_versions", "prune", stdout=out)
    assert f"Deleted 100 vectors of fingerprint {retired}" in out.getvalue()
    assert "Removed 2 vector tables of pruned versions from PostgreSQL" in out.getvalue()
    kept = sorted([(current, "building", True), (current, "live", True), (building, "live", True)])
    assert _generations() == (kept, 3)
    assert ids(pg_backend.search(vectors[3], **kwargs)) == ["3"]  # the version in use still answers
    assert ids(other.search(vectors[7], **{**kwargs, "fingerprint": building})) == ["7"]
    assert other.search(vectors[3], **{**kwargs, "fingerprint": retired}) == []  # its table gone: nothing, no error

    out = io.StringIO()
    call_command("visual_search_versions", "prune", stdout=out)
    assert "Nothing to prune" in out.getvalue() and "table" not in out.getvalue()
    assert _generations() == (kept, 3)


def test_prune_waits_for_a_refit_of_a_fingerprint_it_drops(pg_backend):
    """A refit holds its model's lock while it fills the next generation; dropping that table
    under it would break the refit. The prune waits, then drops what the refit left."""
    import threading

    from visual_search.backends.pgvector.backend import _lock_key

    kwargs = search_kwargs()
    retired = "a" * 32
    pg_backend.add(store(clustered(50), fingerprint=retired))
    dropped: list[int] = []

    def prune() -> None:
        try:
            dropped.append(pg_backend.forget_fingerprints({kwargs["fingerprint"]}))
        finally:
            connections.close_all()

    key = _lock_key("refit", kwargs["result_type_id"], retired)
    with connections["pgvector_other"].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])  # a refit of the retired version, running
        thread = threading.Thread(target=prune)
        thread.start()
        thread.join(1)
        assert thread.is_alive() and _generations()[1] == 1
        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    thread.join(30)
    assert dropped == [1] and _generations() == ([], 0)


def test_rebuilding_one_model_keeps_the_other_models_vectors(pg_backend):
    """`visual_search_rebuild_index --model` must not empty pgvector for every other model."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command

    from tests.testapp.models import ProductImage
    from visual_search.models import ImageEmbedding

    vectors = clustered(200)
    rows = store(vectors)
    other = ContentType.objects.get_for_model(ProductImage)
    ImageEmbedding.objects.filter(pk__in=[r.pk for r in rows[100:]]).update(result_type=other)
    pg_backend.rebuild(ImageEmbedding.objects.filter(pk__in=[r.pk for r in rows]))
    call_command("visual_search_rebuild_index", "--model", "testapp.Product", verbosity=0)
    assert ids(pg_backend.search(vectors[3], **search_kwargs(limit=1))) == ["3"]
    assert ids(pg_backend.search(vectors[150], **search_kwargs(limit=1, result_type_id=other.pk))) == ["150"]


def test_repair_puts_back_ready_rows_the_index_lost(pg_backend):
    """A worker killed (or the database lost) between a row's commit and its add(): the sweep's
    repair finds the ready rows the index lacks, or holds an older vector of, and adds them."""
    from django.utils import timezone

    from visual_search.models import ImageEmbedding

    vectors = clustered(200)
    rows = store(vectors)
    pg_backend.add(rows[:150])  # the last 50 were committed but never reached the index
    kwargs = search_kwargs(limit=1)
    assert ids(pg_backend.search(vectors[170], **kwargs)) != ["170"]
    # And one row recomputed after its vector was written: the index holds the older one.
    ImageEmbedding.objects.filter(pk=rows[3].pk).update(vector=vectors[4].astype(np.float32).tobytes(), updated_at=timezone.now())
    assert pg_backend.repair(kwargs["result_type_id"], kwargs["fingerprint"]) == 51
    assert ids(pg_backend.search(vectors[170], **kwargs)) == ["170"]
    assert set(ids(pg_backend.search(vectors[4], **search_kwargs(limit=2)))) == {"3", "4"}
    assert pg_backend.repair(kwargs["result_type_id"], kwargs["fingerprint"]) == 0  # nothing left to do
    # A product deleted while its remove() was lost: its vector goes at the next repair.
    ImageEmbedding.objects.filter(pk=rows[170].pk).delete()
    pg_backend.repair(kwargs["result_type_id"], kwargs["fingerprint"])
    with pg_backend._cursor() as cursor:
        [generation] = pg_backend._generations(cursor, kwargs["result_type_id"], kwargs["fingerprint"])
        cursor.execute(f"SELECT count(*) FROM {generation.table}")
        assert cursor.fetchone()[0] == 199


def test_a_change_committed_while_the_old_image_is_stored_is_never_overwritten(pg_backend, monkeypatch):
    """The race a soak run found: a task read "the image is still X", a change to Y committed and
    marked the row pending, then the task wrote X's vector over it as ready. Once the rows are
    locked before the image is read, the change waits for the task's commit and wins."""
    import threading

    from django.core.files.base import ContentFile
    from django.db import connections

    import visual_search
    from tests.conftest import catalogue_image
    from tests.testapp.models import Product
    from visual_search import indexing
    from visual_search.models import ImageEmbedding
    from visual_search.registry import registrations_for_model

    registration = registrations_for_model(Product)[0]
    old, new = catalogue_image("Banana").read_bytes(), catalogue_image("Red-Bell-Pepper").read_bytes()
    product = Product(name="Banana")
    product.image.save("banana.jpg", ContentFile(old), save=False)
    with visual_search.pause_indexing(reindex_on_exit=False):
        product.save()
    changed = threading.Event()

    def change() -> None:  # the shop's admin, on its own connection, while the task stores
        try:
            with visual_search.pause_indexing(reindex_on_exit=False):
                other = Product.objects.get(pk=product.pk)
                other.image.save("pepper.jpg", ContentFile(new))
            changed.set()
        finally:
            for alias in connections:
                connections[alias].close()

    manager = ImageEmbedding.objects
    original = manager.update_or_create
    started: list[threading.Thread] = []

    def store_after_a_change(*args, **kwargs):
        if threading.current_thread() is threading.main_thread() and not started:
            started.append(threading.Thread(target=change))
            started[0].start()
            changed.wait(3)  # the change commits here, unless the task's lock holds it back
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, "update_or_create", store_after_a_change)
    indexing.index_objects(registration, [product.pk])
    started[0].join(30)
    monkeypatch.setattr(manager, "update_or_create", original)
    assert changed.is_set()
    product.refresh_from_db()
    assert "pepper" in product.image.name
    row = ImageEmbedding.objects.get(object_id=str(product.pk), field_name="image")
    assert row.status == "pending", "the old image's vector was stored over the change"
    indexing.index_objects(registration, [product.pk])
    row.refresh_from_db()
    assert row.status == "ready" and row.source_name == product.image.name


@pytest.mark.parametrize("learned_from", [20, 100])
def test_a_whitening_the_catalogue_outgrew_is_never_confident_with_pgvector(pg_backend, settings, learned_from):
    """As tests/test_backend_ann.py's for NumPy and FAISS: a small catalogue's whitening, with the
    chance calibration, searched with a catalogue of 100 times as many vectors took customers'
    photos for copies (97 %, wrong), since pgvector kept its generation whitened as it was. Outgrown,
    it states no confident match, and one learned from fewer than OUTGROWN_PLAIN_BELOW vectors
    ranks by plain cosine: the same results as the NumPy backend's, from the same rows."""
    from django.test.utils import CaptureQueriesContext

    from visual_search import ranking
    from visual_search.backends.rows import OUTGROWN_PLAIN_BELOW
    from visual_search.models import Whitening
    from visual_search.ranking import fit_whitening as learn

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 60}
    vectors = clustered(2000)
    rows = store(vectors, result_ids=[i // 2 for i in range(len(vectors))])
    mean, projection = learn(vectors[:learned_from], min(16, learned_from - 1))
    kwargs = search_kwargs()
    Whitening.objects.create(
        result_type_id=kwargs["result_type_id"], fingerprint=kwargs["fingerprint"], dimensions=projection.shape[1],
        trained_on=learned_from, mean=mean.tobytes(), projection=projection.tobytes(),
    )
    pg_backend.add(rows)  # the generation is whitened with it, as after the small catalogue's fit
    policy = ranking.Policy(calibration=ranking.CHANCE_CALIBRATION)
    query = vectors[-1]  # a copy of a stored image
    hits = pg_backend.search(query, policy=policy, **kwargs)
    assert hits[0].result_id == "999" and hits[0].probability < 0.2
    assert ids(hits) == ids(NumpyBackend().search(query, policy=policy, **kwargs))
    with pg_backend.space(kwargs["result_type_id"], kwargs["fingerprint"]) as space:
        assert space.outgrown
        transformed = space.transform(query)
        plain = transformed.shape == query.shape and np.allclose(transformed, query / np.linalg.norm(query), atol=1e-5)
        assert plain == (learned_from < OUTGROWN_PLAIN_BELOW)
    # The rows are read once, then kept: within REFRESH_INTERVAL a search makes no query at all.
    with CaptureQueriesContext(connections["pgvector"]) as queries:
        assert ids(pg_backend.search(query, policy=policy, **kwargs)) == ids(hits)
    assert len(queries) == 0, [q["sql"][:80] for q in queries]
    # A product added in this process is found at once, as with the NumPy backend.
    pg_backend.add(store(vectors[:1], result_ids=["new"], start=5000))
    assert "new" in ids(pg_backend.search(vectors[0], policy=policy, **kwargs))
    # Learned again: the whitened HNSW index, and the copy is a copy again.
    Whitening.objects.all().delete()
    fit_whitening(dims=16)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    with pg_backend.space(kwargs["result_type_id"], kwargs["fingerprint"]) as space:
        assert not space.outgrown and type(space).__name__ == "_Space"
    assert pg_backend.search(query, policy=policy, **kwargs)[0].probability == pytest.approx(ranking.COPY_PROBABILITY)


def test_an_outgrown_catalogue_too_big_to_scan_in_memory_is_never_confident_either(pg_backend, settings, monkeypatch):
    """Above OUTGROWN_SCAN_MAX rows the HNSW index is searched, with the whitening it was stored
    with, still never confident."""
    from visual_search import ranking
    from visual_search.backends.pgvector import backend as pgvector_backend
    from visual_search.models import Whitening
    from visual_search.ranking import fit_whitening as learn

    monkeypatch.setattr(pgvector_backend, "OUTGROWN_SCAN_MAX", 500)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    vectors = clustered(1000)
    rows = store(vectors)
    mean, projection = learn(vectors[:20], 16)
    kwargs = search_kwargs()
    Whitening.objects.create(
        result_type_id=kwargs["result_type_id"], fingerprint=kwargs["fingerprint"], dimensions=16,
        trained_on=20, mean=mean.tobytes(), projection=projection.tobytes(),
    )
    pg_backend.add(rows)
    hits = pg_backend.search(vectors[7], policy=ranking.Policy(calibration=ranking.CHANCE_CALIBRATION), **kwargs)
    assert hits[0].result_id == "7" and hits[0].probability < 0.2
    with pg_backend.space(kwargs["result_type_id"], kwargs["fingerprint"]) as space:
        assert space.outgrown and type(space).__name__ == "_Space"
    assert not pg_backend._raw


def test_the_sweep_removes_the_rows_of_objects_that_do_not_exist(pg_backend, settings):
    """An index restored without its products (or products deleted in SQL): their rows went on being
    searched and counted for ever. A row's id is matched to an integer key and to a native uuid."""
    from django.core.files.base import ContentFile

    from tests.conftest import catalogue_image
    from tests.testapp.models import Gadget, Product
    from visual_search.models import ImageEmbedding
    from visual_search.tasks import sweep

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [
        {"model": "testapp.Product", "image_field": "image"}, {"model": "testapp.Gadget", "image_field": "photo"}]}
    products = [Product.objects.create(name="Kept"), Product.objects.create(name="Gone")]
    gadgets = [Gadget(name="Kept"), Gadget(name="Gone")]
    for product, gadget, name in zip(products, gadgets, ["Lemon", "Lime"]):
        product.image.save(f"{name}.jpg", ContentFile(catalogue_image(name).read_bytes()))
        gadget.photo.save(f"{name}.jpg", ContentFile(catalogue_image(name).read_bytes()))
    Product.objects.filter(pk=products[1].pk)._raw_delete("pgvector")
    Gadget.objects.filter(pk=gadgets[1].pk)._raw_delete("pgvector")
    assert ImageEmbedding.objects.count() == 4
    sweep(older_than=0)
    assert sorted(ImageEmbedding.objects.values_list("object_id", flat=True)) == sorted([str(products[0].pk), str(gadgets[0].pk)])


def test_a_shop_on_naive_local_time_indexes_and_finds(pg_backend, settings, monkeypatch):
    """With USE_TZ = False every add() stopped with "TypeError: can't subtract offset-naive and
    offset-aware datetimes" (psycopg's timestamptz wanted an aware updated_at): nothing saved was
    ever searchable, a rebuild failed, and so did the sweep's repair. Now the copy's updated_at is
    the row's, as PostgreSQL reads it, in the autumn's repeated hour too, so searches join them."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from visual_search.models import ImageEmbedding

    settings.USE_TZ, settings.TIME_ZONE = False, "Europe/Stockholm"

    def at(utc: str) -> None:  # the naive wall time a process reads at this instant
        wall = datetime.fromisoformat(utc).astimezone(ZoneInfo("Europe/Stockholm")).replace(tzinfo=None)
        monkeypatch.setattr(timezone, "now", lambda: wall)

    vectors = clustered(60)
    at("2026-10-24T10:00:00+00:00")
    rows = store(vectors[:40])
    pg_backend.add(rows)
    kwargs = search_kwargs(limit=1)
    assert ids(pg_backend.search(vectors[7], **kwargs)) == ["7"]
    at("2026-10-25T01:10:00+00:00")  # 02:10 CET, the second 02:10 of the night
    late = store(vectors[40:50], start=40)
    pg_backend.add([ImageEmbedding.objects.get(pk=row.pk) for row in late])
    assert ids(pg_backend.search(vectors[45], **kwargs)) == ["45"]
    kwargs = search_kwargs(limit=1)
    assert pg_backend.repair(kwargs["result_type_id"], kwargs["fingerprint"]) == 0
    pg_backend.rebuild(ImageEmbedding.objects.ready(kwargs["fingerprint"]))
    assert ids(pg_backend.search(vectors[45], **kwargs)) == ["45"] and ids(pg_backend.search(vectors[7], **kwargs)) == ["7"]
