"""visual_search_reindex and visual_search_status, as staff run them."""

import io

import pytest
from django.core.management import CommandError, call_command

import visual_search
from visual_search.models import ImageEmbedding
from tests.conftest import catalogue_image

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def imported(make_product):
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(n, catalogue_image(n)) for n in ["Lemon", "Lime", "Mango"]]
        products.append(make_product("Broken", b"not an image"))
    return products


def test_status_then_reindex_with_progress(imported):
    out, _ = run("visual_search_status")
    assert "testapp.product.image" in out
    assert "4 images need work" in out
    from visual_search.conf import settings

    # What the fingerprint covers, views included: after an upgrade, what changed says why vectors are stale.
    assert f"{len(settings.VIEWS)} view" in out.splitlines()[0] and ", ".join(settings.VIEWS) in out.splitlines()[0]
    out, err = run("visual_search_reindex", "--only", "pending")
    assert "Embedded 3, unchanged 0, failed 1" in out
    assert "4/4" in err  # the progress bar
    out, _ = run("visual_search_status", "--failed")
    assert "not an image" in out
    out, _ = run("visual_search_reindex")
    assert "Embedded 0, unchanged 3, failed 1" in out


def test_status_names_the_project_s_celery_app_in_the_worker_command(imported, settings, monkeypatch):
    """Staff were told to run `celery -A yourproject worker` word for word: the project's app, in
    Celery's Django layout (``Celery("shop")`` in the ``shop`` package), is named; a name that is no
    module keeps the placeholder, as `-A` would not find it."""
    from celery import Celery

    from visual_search import queue

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    monkeypatch.setattr(queue, "current_app", Celery("demo_shop", set_as_current=False))
    out, _ = run("visual_search_status")
    assert "(`celery -A demo_shop worker`)" in out
    monkeypatch.setattr(queue, "current_app", Celery("no_such_project", set_as_current=False))
    out, _ = run("visual_search_status")
    assert "(`celery -A yourproject worker`)" in out


def test_status_does_not_ask_for_a_reindex_while_the_workers_have_the_images(imported, settings):
    """With Celery, rows pending for less than SWEEP_AFTER_SECONDS are a worker's: the status said
    to run an in-process reindex of them, doing the workers' job twice."""
    from datetime import timedelta

    from django.utils import timezone

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out, _ = run("visual_search_status")
    assert "4 images have been pending for less than SWEEP_AFTER_SECONDS" in out and "need work" not in out
    ImageEmbedding.objects.filter(object_id=str(imported[0].pk)).update(updated_at=timezone.now() - timedelta(hours=1))
    out, _ = run("visual_search_status")
    assert "3 images have been pending" in out
    assert "1 image needs work: the sweep queues it at its next run" in out and "visual_search_reindex --async --only" in out
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}  # in-process: all of them are to do
    out, _ = run("visual_search_status")
    assert "pending for less" not in out and "4 images need work: `manage.py visual_search_reindex --only missing,stale,pending`" in out


def test_status_says_what_to_do_about_failed_images(imported, settings):
    """Media not shared with the workers: every image a worker indexed failed "missing from
    storage", and the status showed a count in a column, no word of why or what to do; nothing
    retries a failed image by itself, even once the storage is fixed."""
    from visual_search.serving import current_fingerprint

    rows = ImageEmbedding.objects.filter(fingerprint=current_fingerprint())
    rows.filter(object_id=str(imported[0].pk)).update(status="failed", error="The image file 'p/Lemon.jpg' is missing from storage.")
    rows.filter(object_id=str(imported[3].pk)).update(status="failed", error="This file is not an image.")
    out, _ = run("visual_search_status")
    assert "2 images failed: `manage.py visual_search_status --failed` lists why" in out and "missing from storage" not in out
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}  # the workers read the images
    out, _ = run("visual_search_status")
    assert "nothing retries them by itself" in out and "`manage.py visual_search_reindex --only failed`" in out
    assert "1 of them is missing from storage" in out and "the Celery workers do not read the same media storage" in out
    rows.filter(object_id=str(imported[0].pk)).update(status="ready", error="")
    out, _ = run("visual_search_status")
    assert "1 image failed" in out and "missing from storage" not in out


def test_ctrl_c_says_how_far_it_got_and_how_to_go_on(imported, monkeypatch):
    """Ctrl-C dumped TensorFlow's KeyboardInterrupt traceback and nothing else."""
    from visual_search.management.commands import visual_search_reindex as command

    def interrupted(model, only, asynchronous, force, progress, before_fit=None, fit_progress=None, vectors=None):
        progress(2)
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "reindex", interrupted)
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "--only", "pending")
    assert str(raised.value) == (
        "Interrupted after 2 of 4 images. Nothing is half-written: run "
        "`manage.py visual_search_reindex --only pending` to go on with the rest."
    )
    assert raised.value.returncode == 130


def test_ctrl_c_while_queueing_says_what_happens_to_the_rest(imported, monkeypatch):
    """Ctrl-C during `--async` (queueing 100,000 images takes seconds) dumped kombu's traceback."""
    from visual_search.management.commands import visual_search_reindex as command

    def interrupted(model, only, asynchronous, force):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "reindex", interrupted)
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "--async", "--only", "pending")
    assert "Interrupted while queueing" in str(raised.value)
    assert "`manage.py visual_search_reindex --async --only missing,stale,pending`" in str(raised.value)
    assert raised.value.returncode == 130


def test_status_says_when_the_scores_wait_for_a_whitening(imported, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_AUGMENT": 2}
    run("visual_search_reindex", "--only", "pending")
    from visual_search.models import Whitening

    Whitening.objects.all().delete()
    out, _ = run("visual_search_status")
    assert "The whitening and score calibration are due" in out and "visual_search_reindex --only missing" in out
    assert "until then scores are the default calibration's" in out  # none learned before
    # In-process (the test settings): no worker or sweep will, so it does not say they will.
    assert "Celery workers learn" not in out and "Without Celery nothing learns them by itself" in out
    # The fit takes a while after the progress bar: the command says so before, not after a silent minute.
    out, err = run("visual_search_reindex", "--only", "missing")
    assert out.index("Learning the whitening and score calibration") < out.index("learned again for 1 model")
    # ... and shows a bar while customer-like views of the images go through the network again.
    assert "Customer views: 100%" in err and "3/3" in err, err  # its 3 ready images
    assert err.count("Customer views: 100%") == 1, err  # not once by update() and again by close()
    assert "are due" not in run("visual_search_status")[0]


def test_status_does_not_ask_for_an_in_process_fit_while_the_workers_index(imported, settings):
    """With Celery and images pending, the due whitening's line said `visual_search_reindex --only
    missing` "learns them now": run then, it learned them in its own process from the part indexed
    so far (found following the upgrade from 0.1 with a worker recomputing 684 images)."""
    from django.utils import timezone

    from visual_search.models import Whitening

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_AUGMENT": 2}
    run("visual_search_reindex", "--only", "pending")
    Whitening.objects.all().delete()
    ImageEmbedding.objects.filter(object_id=str(imported[0].pk)).update(status="pending", updated_at=timezone.now())
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out, _ = run("visual_search_status")
    assert "The whitening and score calibration are due" in out and "The Celery workers learn them" in out
    assert "learns them now" not in out and "Leave it to them while images are pending" in out
    ImageEmbedding.objects.filter(status="pending").update(status="ready")  # indexing done: nothing to wait for
    assert "learns them now" in run("visual_search_status")[0]


def test_in_a_log_the_progress_is_whole_lines(imported, monkeypatch):
    """Not a terminal (cron, a container's log, CI): each state of the bar is a line of its own,
    not carriage-return redraws that make one endless line. tests/test_quiet.py: a terminal."""
    from visual_search.management import progress

    monkeypatch.setattr(progress, "LOG_LINE_EVERY", 0.0)  # a line at every update, as a long run writes them
    _, err = run("visual_search_reindex", "--only", "pending")
    assert "\r" not in err
    bars = [line for line in err.splitlines() if line.startswith("Embedding:")]
    assert bars[0].startswith("Embedding:   0%") and bars[-1].startswith("Embedding: 100%") and "4/4" in bars[-1], err
    assert sum(line.startswith("Embedding: 100%") for line in bars) == 1, err  # not once by update() and again by close()


def test_weights_that_do_not_load_are_one_clear_error_and_lose_nothing(imported, settings, tmp_path, caplog):
    not_weights = tmp_path / "vgg16_notop.h5"
    not_weights.write_bytes(b"an HTML error page saved as the weights")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WEIGHTS": str(not_weights)}
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex")
    message = str(raised.value)
    assert "is not a Keras VGG16 include_top=False weights file" in message and "stay pending" in message
    assert not ImageEmbedding.objects.exclude(status="pending").exists()
    # Saved in-process (no broker): one line in the log that says what is wrong, not a traceback.
    caplog.clear()
    imported[0].image.save("again.jpg", __import__("django.core.files.base", fromlist=["ContentFile"]).ContentFile(
        catalogue_image("Kiwi").read_bytes()))
    [record] = [r for r in caplog.records if "stay pending" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is None and "not a Keras VGG16" in record.getMessage()
    # In a Celery worker: the task ends (no traceback, no retry loop), the rows wait for the sweep.
    from visual_search import tasks
    from visual_search.tasks import embed_objects

    caplog.clear()
    pks = [product.pk for product in imported]
    tasks._weights_error_logged.clear()
    outcome = embed_objects.apply(args=("testapp.product", "image", pks))
    assert outcome.successful() and outcome.result["pending"] == len(pks) and "not a Keras VGG16" in outcome.result["error"]
    [record] = [r for r in caplog.records if "stay pending" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is None
    # The sweep queues every pending image again, hundreds of tasks: one ERROR, not one each.
    caplog.clear()
    for _ in range(3):
        embed_objects.apply(args=("testapp.product", "image", pks))
    assert [r for r in caplog.records if "stay pending" in r.getMessage() and r.levelname != "DEBUG"] == []
    assert not ImageEmbedding.objects.exclude(status="pending").exists()


def test_only_failed_retries_just_those(imported):
    run("visual_search_reindex")
    broken = imported[-1]
    broken.image.save("fixed.jpg", __import__("django.core.files.base", fromlist=["ContentFile"]).ContentFile(
        catalogue_image("Kiwi").read_bytes()), save=False)
    with visual_search.pause_indexing(reindex_on_exit=False):
        broken.save()
    ImageEmbedding.objects.for_object(broken).update(status="failed")
    out, _ = run("visual_search_reindex", "testapp.Product", "--only", "failed")
    assert "Embedded 1, unchanged 0, failed 0" in out


def test_async_without_a_broker_runs_in_process_when_asked(imported, settings):
    out, _ = run("visual_search_reindex", "--async")
    # ASYNC is False in the test settings: --async still queues, i.e. runs each batch eagerly.
    assert "Queued" in out
    assert ImageEmbedding.objects.filter(status="ready").count() == 3


def test_images_queued_for_the_workers_count_as_pending_not_missing(imported, settings, monkeypatch):
    """`--async` (and the admin's buttons, the sweep) queued never-indexed images without a row: the
    status said "missing" until a worker got to them, and each sweep queued them all again."""
    from visual_search import queue, tasks

    run("visual_search_reindex")  # in-process: three ready, the broken one failed
    before = dict(ImageEmbedding.objects.values_list("object_id", "updated_at"))
    ImageEmbedding.objects.filter(object_id=str(imported[0].pk)).delete()  # never indexed, as a bulk import
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **kwargs: sent.append(args[2]))
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out, _ = run("visual_search_reindex", "--async")
    assert "Queued 4 of 4 images" in out
    rows = {row.object_id: row for row in ImageEmbedding.objects.all()}
    assert rows[str(imported[0].pk)].status == "pending"
    # What was there is left as it was: a ready vector stays searchable until a worker replaces it.
    assert [rows[str(p.pk)].status for p in imported[1:]] == ["ready", "ready", "failed"]
    assert all(rows[str(p.pk)].updated_at == before[str(p.pk)] for p in imported[1:])
    out, _ = run("visual_search_status")
    assert "1 image has been pending for less than SWEEP_AFTER_SECONDS" in out
    table = dict(zip(out.split("\n")[1].split(), out.split("\n")[2].split()))
    assert (table["pending"], table["missing"]) == ("1", "0")
    # The sweep leaves it to the worker it was queued for, until SWEEP_AFTER_SECONDS have passed.
    sent.clear()
    tasks.sweep()
    assert sent == []


def test_a_forced_async_reindex_leaves_ready_images_ready_as_the_docs_say(imported, settings, monkeypatch):
    """docs/installation.md said anything queued counts as pending: a shop that ran `--async --force`
    saw 0 pending and no sign of the work. Ready images stay ready (searchable) while recomputed."""
    import re
    from pathlib import Path

    from visual_search import queue

    run("visual_search_reindex")
    monkeypatch.setattr(queue, "send", lambda name, args, **kwargs: None)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    assert "Queued 4 of 4 images" in run("visual_search_reindex", "--async", "--force")[0]
    assert sorted(ImageEmbedding.objects.values_list("status", flat=True)) == ["failed", "ready", "ready", "ready"]
    out, _ = run("visual_search_status")
    assert dict(zip(out.split("\n")[1].split(), out.split("\n")[2].split()))["pending"] == "0"
    docs = " ".join((Path(__file__).resolve().parent.parent / "docs" / "installation.md").read_text().split())
    said = re.search(r"An image queued for the workers .*?\. One that has a vector (.*?)stays so\.", docs)
    assert said and "*ready* one stays ready" in said.group(1) and "--async --force` over an indexed catalogue shows 0 pending" in said.group(1)


def test_async_that_queues_nothing_fails_and_says_why(imported, settings, monkeypatch):
    """It printed "Queued 0 of 3" in green and exited 0; with the project's Celery app not imported,
    it blamed the broker."""
    from celery import Celery

    from visual_search import queue

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(queue, "send", refuse)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    with pytest.raises(CommandError, match=r"Queued 0 of \d+ images.*stay pending.*Is the broker running\?"):
        run("visual_search_reindex", "--async")
    settings.CELERY_BROKER_URL = "redis://localhost:6390/0"
    monkeypatch.setattr(queue, "current_app", Celery("default", set_as_current=False))
    with pytest.raises(CommandError, match=r"from \.celery import app as celery_app"):
        run("visual_search_reindex", "--async")
    assert not ImageEmbedding.objects.filter(status="ready").exists()


def test_async_with_nothing_to_queue_leaves_the_whitening_to_the_workers(imported, settings, monkeypatch):
    """After an upgrade the workers' start-up sweep queues every stale image: the upgrade's
    `visual_search_reindex --only stale --async` found none stale and learned the whitening in its
    own process, from the few vectors the workers had recomputed so far."""
    from visual_search import queue
    from visual_search.models import Whitening

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 3, "WHITENING_DIMS": 2}
    run("visual_search_reindex")
    assert Whitening.objects.exists()
    Whitening.objects.all().delete()  # due again, as when a new fingerprint's vectors come in
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, *args, **kwargs: sent.append(name))
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out, _ = run("visual_search_reindex", "--only", "stale", "--async")
    assert not Whitening.objects.exists() and sent == [queue.FIT_WHITENING]
    assert "Nothing to queue" in out and "queued for the Celery workers" in out


def test_status_does_not_offer_to_prune_the_vectors_an_upgrade_is_about_to_recompute(imported, settings):
    """After an upgrade (or a settings change) every vector is stale until the reindex: pruned then,
    the images were missing, and the upgrade's `visual_search_reindex --only stale` passed them by."""
    run("visual_search_reindex")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VIEWS": ["full", "flip"]}
    out, _ = run("visual_search_status")
    assert "former settings" in out and "Free the space" not in out
    assert "4 images have only stale vectors" in out and "--only stale" in out
    run("visual_search_reindex", "--only", "stale")
    out, _ = run("visual_search_status")
    assert "only stale vectors" not in out and "Vectors by model version" not in out  # replaced as recomputed


@pytest.mark.django_db(transaction=True)
def test_a_database_not_migrated_yet_says_to_migrate(imported):
    """Right after `pip install -U`, before `migrate`: the database's own error ("no such column")
    was all a command said."""
    from django.core.management import call_command

    from visual_search.management import unapplied_migrations

    assert unapplied_migrations() == []
    call_command("migrate", "visual_search", "0008", verbosity=0)
    try:
        with pytest.raises(CommandError) as raised:
            run("visual_search_reindex")
        assert str(raised.value) == (
            "The database lacks visual search's migrations 0009_duplicates, 0010_result_index, 0011_staff_labels, "
            "0012_embed_attempts, 0013_dismissals_by_model_name: run `python manage.py "
            "migrate` (after an upgrade, see docs/upgrading.md), then this command again."
        )
    finally:
        call_command("migrate", "visual_search", verbosity=0)
    assert "Embedded 3" in run("visual_search_reindex")[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", [
    ["visual_search_rebuild_index"], ["visual_search_reindex", "--only", "stale"], ["visual_search_status"],
    ["visual_search_versions", "list"], ["visual_search_train"], ["visual_search_duplicates"],
])
def test_every_command_stops_before_doing_anything_on_a_0_1_database(imported, command):
    """docs/upgrading.md, step 3: before `migrate` the package's commands stop, naming the migrations.
    On 0.1's tables `visual_search_rebuild_index` "rebuilt" the index from "0 stored vectors" and
    exited 0; `visual_search_reindex` drew a progress bar, and status its table, before the error;
    training left a failed version row whose message said to reindex."""
    from django.core.management import call_command

    run("visual_search_reindex")
    call_command("migrate", "visual_search", "0006", verbosity=0)  # 0.1's last migration
    try:
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError, match=r"lacks visual search's migrations 0007_whitening_calibration, .*run `python manage.py migrate`"):
            call_command(*command, stdout=out, stderr=err)
        assert out.getvalue() == "" and err.getvalue() == ""
    finally:
        call_command("migrate", "visual_search", verbosity=0)


def test_errors_name_what_to_do(db):
    with pytest.raises(CommandError, match="app_label.ModelName"):
        run("visual_search_reindex", "nope")
    with pytest.raises(CommandError, match="not registered"):
        run("visual_search_reindex", "auth.User")
    with pytest.raises(CommandError, match="--only takes"):
        run("visual_search_reindex", "--only", "everything")
    out, _ = run("visual_search_reindex")
    assert "Nothing to index" in out


def test_reindex_names_the_product_whose_photos_are_a_registered_gallery(make_product, settings):
    """A shop whose Product has no image field registers only its ProductImage gallery, with
    result "product"; README's `visual_search_reindex shop.Product --only ...` answered "not
    registered" although the admin's action on the same products reindexed their photos."""
    from django.core.files.base import ContentFile

    from tests.testapp.models import ProductImage

    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH,
        "MODELS": [{"model": "testapp.ProductImage", "image_field": "image", "result": "product"}],
    }
    with visual_search.pause_indexing(reindex_on_exit=False):
        lemon = make_product("Lemon")
        for name in ["Lemon", "Lime"]:
            ProductImage(product=lemon).image.save(f"{name}.jpg", ContentFile(catalogue_image(name).read_bytes()))
    out, _ = run("visual_search_reindex", "testapp.Product", "--only", "pending")
    assert "Embedded 2, unchanged 0, failed 0" in out
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "auth.User")
    assert "Registered: testapp.ProductImage (result testapp.Product)" in str(raised.value)


def test_reindex_of_a_registered_product_covers_its_registered_gallery_too(make_product):
    """Product registered for its main image and ProductImage for its gallery (tests/settings.py):
    `visual_search_reindex testapp.Product` did the main images only, while the product admin's
    reindex action on the same products did both, and staff took the gallery for indexed."""
    from django.core.files.base import ContentFile

    from tests.testapp.models import ProductImage

    with visual_search.pause_indexing(reindex_on_exit=False):
        lemon = make_product("Lemon", catalogue_image("Lemon"))
        ProductImage(product=lemon).image.save("Lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    out, _ = run("visual_search_reindex", "testapp.Product")
    assert "Embedded 2, unchanged 0, failed 0" in out
    assert set(ImageEmbedding.objects.filter(status="ready").values_list("content_type__model", flat=True)) == {"product", "productimage"}


def test_a_wrong_app_label_gets_the_model_it_meant(db):
    """The README's examples say shop.Product; a shop's app is called something else."""
    with pytest.raises(CommandError, match=r"No model 'shop.Product'; did you mean 'testapp.Product'\?"):
        run("visual_search_reindex", "shop.Product")


def test_queueing_many_objects_makes_their_pending_rows_in_a_few_queries(settings, monkeypatch):
    """The admin's "select all" then "Reindex" with Celery: the pending rows were made task by task,
    five queries each (15,000 queries in the request for 100,000 products)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.testapp.models import Product
    from visual_search import queue

    Product.objects.bulk_create([Product(name=f"Imported {i}", image=f"products/imported-{i}.jpg") for i in range(320)])
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **kwargs: sent.append(args[2]))
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True, "BATCH_SIZE": 8}
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as captured:
        assert queue.enqueue("testapp.product", "image", pks) == 320
    assert [len(batch) for batch in sent] == [8] * 40
    assert ImageEmbedding.objects.filter(status="pending").count() == 320
    assert len(captured) < 15, [q["sql"][:100] for q in captured]  # 40 tasks


def test_status_and_selections_are_counted_by_the_database_not_in_python():
    """visual_search_status and the sweep read every product's key and every row's object id into
    sets: 60 MB and two seconds at 100,000 products, on each sweep. Their memory no longer grows
    with the catalogue."""
    import tracemalloc

    from tests.testapp.models import Product
    from visual_search.reindex import select_pks, status_counts
    from visual_search.registry import get_registration

    registration = get_registration("testapp.product", "image")

    def peak() -> int:
        tracemalloc.start()
        try:
            table = status_counts()
            assert select_pks(registration, ["stale", "failed", "pending"]) == []
            return tracemalloc.get_traced_memory()[1], table[0]
        finally:
            tracemalloc.stop()

    Product.objects.bulk_create([Product(name=f"Imported {i}", image=f"products/imported-{i}.jpg") for i in range(100)])
    peak()  # warm: the first call compiles and caches what every call needs
    small, table = peak()
    assert (table["objects"], table["missing"]) == (100, 100)
    Product.objects.bulk_create([Product(name=f"More {i}", image=f"products/more-{i}.jpg") for i in range(5000)])
    large, table = peak()
    assert (table["objects"], table["missing"]) == (5100, 5100)
    assert large < small + 100_000, (small, large)
