"""A shop upgrading from 0.1 (migrations 0001-0006) with data, as docs/upgrading.md says."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

import visual_search
from visual_search.models import DuplicateDismissal, ImageEmbedding, Whitening
from tests.conftest import catalogue_image
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Lemon", "Lime", "Mango", "Kiwi"]
OLD = [("visual_search", "0006_pgvector")]  # 0.1's last migration


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes("visual_search")


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_0_1_rows_survive_the_migrations_and_the_upgrade_recomputes_them(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 4, "WHITENING_DIMS": 2}
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(name, catalogue_image(name)) for name in NAMES]
        broken = make_product("Broken", b"not an image")
    run("visual_search_reindex")  # the vectors a 0.1 shop has (one view, as 0.1 made them)
    before = dict(ImageEmbedding.objects.values_list("id", "vector"))
    try:
        old = migrate(OLD)
        # 0.1 wrote its rows with the columns it had: a failed image keeps 0.1's reason.
        OldEmbedding = old.get_model("visual_search", "ImageEmbedding")
        OldEmbedding.objects.filter(object_id=str(broken.pk)).update(error="cannot identify image file")
        assert OldEmbedding.objects.count() == 5 and old.get_model("visual_search", "Whitening").objects.count() == 1
    finally:
        migrate(latest())
    rows = ImageEmbedding.objects.all()
    assert dict(rows.values_list("id", "vector")) == before  # nothing lost, byte for byte
    assert {r.status for r in rows if r.object_id != str(broken.pk)} == {"ready"}
    failed = rows.get(object_id=str(broken.pk))
    assert (failed.status, failed.error, failed.embed_attempts, failed.duplicate_of) == ("failed", "cannot identify image file", 0, None)
    assert Whitening.objects.get().calibration == {}  # 0.1 had none: due (docs/upgrading.md, step 6)
    assert "The whitening and score calibration are due" in run("visual_search_status")

    # The upgrade's settings: the views are part of the fingerprint, so 0.1's vectors are stale.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VIEWS": ["full", "flip"]}
    status = run("visual_search_status")
    assert "testapp.product.image       5        0      0        0       5      0" in status
    out = run("visual_search_reindex", "--only", "stale")
    assert "Embedded 4, unchanged 0, failed 1" in out
    status = run("visual_search_status")
    assert "testapp.product.image       5        4      0        1       0      0" in status and "Scores of testapp.product" in status
    result_type = ContentType.objects.get_for_model(Product)
    assert Whitening.objects.filter(result_type=result_type).exclude(calibration={}).exists()
    photo = catalogue_image("Mango").read_bytes()
    assert visual_search.search_by_image(photo, Product, limit=1)[0].object == products[2]


def test_before_migrate_a_search_logs_what_to_run_not_a_traceback(make_product, client, caplog):
    """docs/upgrading.md, step 3: before `migrate` a search answers 503. Each one logged a
    traceback ending "no such column: visual_search_whitening.calibration", which did not say that
    the migrations were the cause, or what to run."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        make_product("Lemon", catalogue_image("Lemon"))
    run("visual_search_reindex")
    try:
        migrate(OLD)
        with caplog.at_level("ERROR", logger="visual_search"):
            with open(catalogue_image("Lemon"), "rb") as photo:
                response = client.post("/api/visual-search/search/", {"image": photo})
    finally:
        migrate(latest())
    assert response.status_code == 503 and response["Retry-After"]
    (record,) = [r for r in caplog.records if r.name == "visual_search" and r.levelname == "ERROR"]
    assert "lacks visual search's migrations 0007_whitening_calibration" in record.getMessage()
    assert "run `python manage.py migrate`" in record.getMessage() and record.exc_info is None


def test_0013_names_the_models_of_dismissed_duplicates_and_back(make_product, settings):
    """Dismissals written before 0013 name each image's model by content type id ("7:12:image"):
    the migration rewrites them by name, sorted again, so they still apply (and survive a move to
    a database with other ids); backwards, the ids come back as they were."""
    from visual_search import duplicates

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "DUPLICATE_THRESHOLD": 0.999}
    original = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    copy = make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    assert ImageEmbedding.objects.filter(duplicate_of__isnull=False).count() == 2
    product, user = (ContentType.objects.get_for_model(m).pk for m in (Product, get_user_model()))
    # As 0012's code wrote them: sorted as text by id; one of a model since removed (no content type).
    old = [
        tuple(sorted((f"{product}:{original.pk}:image", f"{product}:{copy.pk}:image"))),
        tuple(sorted((f"{product}:{original.pk}:image", f"{user}:1:avatar"))),
        tuple(sorted(("99999:1:image", f"{product}:{copy.pk}:image"))),
    ]
    try:
        Dismissal = migrate([("visual_search", "0012_embed_attempts")]).get_model("visual_search", "DuplicateDismissal")
        Dismissal.objects.bulk_create([Dismissal(first=first, second=second) for first, second in old])
    finally:
        migrate(latest())
    stored = list(DuplicateDismissal.objects.order_by("pk").values_list("first", "second"))
    assert stored == [
        (f"testapp.product:{original.pk}:image", f"testapp.product:{copy.pk}:image"),
        ("auth.user:1:avatar", f"testapp.product:{original.pk}:image"),  # sorted by name now
        ("99999:1:image", f"testapp.product:{copy.pk}:image"),
    ]
    duplicates.detect(ImageEmbedding.objects.all())
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()  # the dismissal applies
    try:
        Dismissal = migrate([("visual_search", "0012_embed_attempts")]).get_model("visual_search", "DuplicateDismissal")
        assert list(Dismissal.objects.order_by("pk").values_list("first", "second")) == old
    finally:
        migrate(latest())
