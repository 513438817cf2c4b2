"""Model versions: vectors of several versions side by side, a safe switch, rollback, command, admin.

A real adapted version is built here (random 64-px VGG16 trunk, a seeded random head saved to the
default storage like the trainer does), so every path runs the network it will run in a shop.
"""

import io
import time

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

import visual_search
from tests.conftest import VERSION_CONFIG as CONFIG
from tests.conftest import catalogue_image
from tests.testapp.models import Product
from visual_search import versions
from visual_search.serving import get_extractor
from visual_search.embeddings.spec import settings_fingerprint
from visual_search.serving import current_fingerprint
from visual_search.embeddings.images import checksum
from visual_search.indexing import index_objects
from visual_search.models import ImageEmbedding, ModelVersion
from visual_search.registry import get_registration
from visual_search.versions import VersionError, activate, rollback, version_fingerprint

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Arla-Standard-Milk", "Oatly-Oat-Milk", "Lemon", "Banana", "Red-Delicious", "Tropicana-Apple-Juice"]


@pytest.fixture
def catalogue(make_product):
    return {name: make_product(name.replace("-", " "), catalogue_image(name)) for name in NAMES}


def rows_of(fingerprint, status="ready"):
    return ImageEmbedding.objects.filter(fingerprint=fingerprint, status=status)


def search(name):
    return visual_search.search_by_image(catalogue_image(name).read_bytes(), Product, limit=len(NAMES))


def test_version_fingerprint_covers_config_and_weights():
    assert version_fingerprint(CONFIG, b"w") == version_fingerprint(dict(reversed(CONFIG.items())), b"w")
    assert version_fingerprint(CONFIG, b"w") != version_fingerprint(CONFIG, b"v")
    assert version_fingerprint(CONFIG, b"w") != version_fingerprint({**CONFIG, "dims": 64}, b"w")
    assert len(version_fingerprint(CONFIG, b"w")) == 16


def test_activation_switches_only_once_every_image_has_its_vector(catalogue, trained, make_product):
    pretrained = settings_fingerprint()
    version = trained()
    during = {}

    def progress(done, total):
        if "results" in during or done < total // 2:
            return
        # Half-way: searches still answer fully, from the pretrained vectors only.
        assert current_fingerprint() == pretrained
        during["results"] = search("Lemon")
        during["fingerprints"] = set(ImageEmbedding.objects.values_list("fingerprint", flat=True))
        # An image changed during the build gets a vector of both versions.
        lemon = catalogue["Lemon"]
        lemon.image.save("lemon-2.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
        during["added"] = make_product("Kiwi", catalogue_image("Kiwi"))

    activate(version, progress=progress)
    assert len(during["results"]) == len(NAMES) and during["results"][0].object == catalogue["Lemon"]
    assert during["fingerprints"] == {pretrained, version.fingerprint}

    version.refresh_from_db()
    assert version.status == "active" and version.previous is None and version.previous_fingerprint == pretrained
    assert current_fingerprint() == version.fingerprint
    assert get_extractor().fingerprint == version.fingerprint and get_extractor().dimensions == 32
    assert rows_of(version.fingerprint).count() == len(NAMES) + 1  # Kiwi, added during the build, included
    assert rows_of(pretrained).count() == len(NAMES) + 1  # kept for a rollback
    lime = catalogue_image("Lime").read_bytes()
    row = ImageEmbedding.objects.for_object(catalogue["Lemon"]).get(fingerprint=version.fingerprint)
    assert row.checksum == checksum(lime)
    assert np.allclose(row.array, get_extractor(version).embed_bytes(lime), atol=1e-4)
    # Searches use the new vectors: the query is embedded by the new network and finds its product.
    results = visual_search.search_by_image(lime, Product, limit=3)
    assert results[0].object == catalogue["Lemon"] and results[0].score == pytest.approx(1.0, abs=1e-3)
    assert ModelVersion.objects.get(pk=version.pk).progress["stage"] == "done"


def test_rollback_reuses_the_old_vectors_and_recomputes_only_changed_images(catalogue, trained, embed_calls):
    pretrained = settings_fingerprint()
    version = trained()
    activate(version)
    assert current_fingerprint() == version.fingerprint
    embed_calls.clear()
    assert rollback() is None
    assert embed_calls == []  # nothing changed: nothing computed
    assert current_fingerprint() == pretrained
    assert ModelVersion.objects.get(pk=version.pk).status == "retired"
    assert search("Banana")[0].object == catalogue["Banana"]

    # Active again (computes nothing either), then an image changes, then a rollback.
    embed_calls.clear()  # the search's query
    activate(version)
    assert embed_calls == []
    banana = catalogue["Banana"]
    banana.image.save("banana-2.jpg", ContentFile(catalogue_image("Mango").read_bytes()))
    assert embed_calls == [1]  # the active version only: the pretrained row of the old image is gone
    assert not ImageEmbedding.objects.for_object(banana).filter(fingerprint=pretrained).exists()
    rollback()
    assert embed_calls == [1, 1]  # just that image, for the pretrained model
    assert current_fingerprint() == pretrained
    assert rows_of(pretrained).count() == len(NAMES)
    assert ImageEmbedding.objects.for_object(banana).get(fingerprint=pretrained).checksum == checksum(catalogue_image("Mango").read_bytes())
    with pytest.raises(VersionError, match="Nothing to roll back"):
        rollback()


def test_rollback_walks_back_through_versions(catalogue, trained):
    better = {"before": {"p_at_1": 0.13}, "after": {"p_at_1": 0.5}}  # beats the active First's 0.34
    first, second = trained("First", seed=0), trained("Second", seed=1, metrics=better)
    activate(first)
    activate(second)
    second.refresh_from_db()
    assert second.previous == first and second.previous_fingerprint == first.fingerprint
    assert rollback() == first
    assert current_fingerprint() == first.fingerprint
    assert ModelVersion.objects.get(pk=second.pk).status == "retired"
    assert rollback() is None
    assert current_fingerprint() == settings_fingerprint()


def test_versions_that_cannot_be_activated_say_why(catalogue, trained):
    failed = trained("Broken", status="failed", error="out of memory")
    with pytest.raises(VersionError, match="training failed .out of memory.; train a new version"):
        activate(failed)
    training = ModelVersion.objects.create(label="Running", status="training")
    with pytest.raises(VersionError, match="still training"):
        activate(training)
    with pytest.raises(VersionError, match="no model version 999"):
        activate(999)
    version = trained()
    activate(version)
    with pytest.raises(VersionError, match="already active"):
        activate(version)


def test_a_missing_weights_file_leaves_searches_alone(catalogue, trained):
    version = trained()
    default_storage.delete(version.weights_file)
    ModelVersion.objects.filter(pk=version.pk).update(fingerprint="0123456789abcdef")  # not in the local cache
    with pytest.raises(visual_search.exceptions.WeightsUnavailable, match="missing from the default storage"):
        activate(ModelVersion.objects.get(pk=version.pk))
    version.refresh_from_db()
    assert version.status == "trained" and "missing" in version.error
    assert current_fingerprint() == settings_fingerprint()
    assert search("Lemon")[0].object == catalogue["Lemon"]


def test_cancelling_a_build_keeps_the_active_version(catalogue, trained):
    version = trained()

    def progress(done, total):
        ModelVersion.objects.filter(pk=version.pk).update(cancel_requested=True)

    with pytest.raises(VersionError, match="cancelled"):
        activate(version, progress=progress)
    version.refresh_from_db()
    assert version.status == "trained" and version.progress["stage"] == "cancelled" and not version.cancel_requested
    assert current_fingerprint() == settings_fingerprint()
    assert versions.indexing_fingerprints() == [settings_fingerprint()]


def test_the_asynchronous_build_checks_until_done_then_switches(catalogue, trained):
    """What the ``visual_search.activate_version`` task runs (here its embed tasks run in-process)."""
    version = trained()
    versions._start(versions._Target(version, version.fingerprint, version), keep_previous=False)
    assert versions.indexing_fingerprints() == [settings_fingerprint(), version.fingerprint]
    assert versions.build_step(version.pk, False).after == versions.CHECK_EVERY_SECONDS  # queued the work
    assert ModelVersion.objects.get(pk=version.pk).status == "building"
    assert versions.build_step(version.pk, False) is None  # nothing left: switched
    version.refresh_from_db()
    assert version.status == "active" and rows_of(version.fingerprint).count() == len(NAMES)
    assert version.progress["done"] == version.progress["total"] == len(NAMES)


def test_the_asynchronous_build_shows_its_whitening_fit_in_the_admin(catalogue, trained, settings, staff_client, monkeypatch):
    """With Celery the check that found every image done fits the version's whitening: minutes on a
    slow CPU, while the admin said "building 6/6". The fit's customer views are counted on the row."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_AUGMENT": 1}  # a small shop's fit: customer views
    monkeypatch.setattr(versions, "FIT_PROGRESS_EVERY_SECONDS", 0)
    version = trained()
    seen = []
    original = versions._save_progress

    def saving(target, done, total, **extra):
        saved = original(target, done, total, **extra)
        if "fitting" in extra:  # what the admin shows at that moment
            page = staff_client.get(URL).content.decode()
            seen.append(page.split('<td class="field-progress_display">', 2)[1].split("</td>")[0])
        return saved

    monkeypatch.setattr(versions, "_save_progress", saving)
    versions._start(versions._Target(version, version.fingerprint, version), keep_previous=False)
    versions.build_step(version.pk, False)
    assert versions.build_step(version.pk, False) is None  # nothing left: fitted, then switched
    assert seen[0] == f"learning the whitening 0/{len(NAMES)}" and seen[-1] == f"learning the whitening {len(NAMES)}/{len(NAMES)}", seen
    version.refresh_from_db()
    assert version.status == "active" and "fitting" not in version.progress


def test_a_check_sent_again_replaces_the_lost_one_and_the_build_switches_once(catalogue, trained, monkeypatch):
    """A worker killed while it held the build's next check (a countdown task): Redis gives that
    message back only after its visibility timeout (an hour by default). The sweep sends the check
    again under a new name; the lost one, if it comes back, stops instead of running beside it."""
    from visual_search import queue, workers
    from visual_search.tasks import sweep

    sent = []
    monkeypatch.setattr(queue, "use_celery", lambda: True)
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append((name, args)))
    version = trained()
    versions._start(versions._Target(version, version.fingerprint, version), keep_previous=False, step="first")
    following = versions.build_step(version.pk, False, "first")
    assert following.after == versions.CHECK_EVERY_SECONDS and following.step not in (None, "first")
    assert versions.build_step(version.pk, False, "first") is None  # a copy of a check already done: stops

    assert versions.resume_stalled_builds() == 0  # checked a moment ago: not stalled
    sent.clear()
    # The sweep queued for a worker found dead (a worker's start-up sweep: older_than=0): at once.
    sweep(older_than=workers.HEARTBEAT_TIMEOUT - workers.HEARTBEAT)
    resent = [args for name, args in sent if name == queue.ACTIVATE_VERSION]
    assert len(resent) == 1 and resent[0][:2] == (version.pk, False) and resent[0][2] != following.step
    assert versions.build_step(version.pk, False, following.step) is None  # the lost check came back: it stops

    # The images are computed; the check sent again switches; a second copy of it switches nothing more.
    index_objects(get_registration("testapp.product", "image"), list(Product.objects.values_list("pk", flat=True)), fingerprints=[version.fingerprint])
    active_before = ModelVersion.objects.filter(status="active").count()
    assert versions.build_step(version.pk, False, resent[0][2]) is None
    version.refresh_from_db()
    assert version.status == "active" and active_before == 0
    assert versions.build_step(version.pk, False, resent[0][2]) is None
    # Two checks that both found nothing left before either switched: the second switches nothing.
    versions._finish(versions._Target(version, version.fingerprint, version), keep_previous=False)
    version.refresh_from_db()
    assert version.status == "active" and version.previous is None and ModelVersion.objects.filter(status="active").count() == 1


def test_a_build_switching_or_built_here_is_not_sent_again(catalogue, trained, monkeypatch):
    from visual_search import queue

    sent = []
    monkeypatch.setattr(queue, "use_celery", lambda: True)
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append(args))
    version = trained()
    target = versions._Target(version, version.fingerprint, version)
    versions._start(target, keep_previous=False)  # built by a command in its own process: no named checks
    ModelVersion.objects.filter(pk=version.pk).update(progress={**version.progress, "checked_at": 0})
    assert versions.resume_stalled_builds(0) == 0 and sent == []
    versions._start(target, keep_previous=True, step="a")
    switching = {**ModelVersion.objects.get(pk=version.pk).progress, "left": 0}
    ModelVersion.objects.filter(pk=version.pk).update(progress={**switching, "checked_at": 1})  # fitting its whitening
    assert versions.resume_stalled_builds(0) == 1 and sent[0] == (version.pk, True, ModelVersion.objects.get(pk=version.pk).progress["step"])
    ModelVersion.objects.filter(pk=version.pk).update(progress={**switching, "checked_at": time.time() - 60})
    assert versions.resume_stalled_builds(0) == 0  # a switch may take minutes: left alone


def test_sweep_and_status_treat_retired_rows_as_another_version(catalogue, trained):
    from visual_search.registry import get_registration
    from visual_search.reindex import select_pks, status_counts
    from visual_search.tasks import sweep

    version = trained()
    activate(version)
    assert sweep() == 0  # the pretrained rows wait for a rollback: nothing to requeue
    assert select_pks(get_registration("testapp.product", "image"), ["stale", "missing"]) == []
    row = status_counts()[0]
    assert (row["ready"], row["stale"], row["missing"], row["other_versions"]) == (len(NAMES), 0, 0, len(NAMES))
    # A pending row of a version no longer built would never be computed: the sweep drops it.
    ImageEmbedding.objects.filter(fingerprint=settings_fingerprint()).update(status="pending")
    assert sweep() == 0
    assert not rows_of(settings_fingerprint(), "pending").exists()


def test_whitening_of_a_version_is_fitted_before_it_is_active(catalogue, trained, settings):
    from visual_search.models import Whitening

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": "pca", "WHITENING_MIN_VECTORS": 5, "WHITENING_DIMS": 4}
    version = trained()
    activate(version)
    assert Whitening.objects.filter(fingerprint=version.fingerprint).get().trained_on == len(NAMES)
    assert search("Lemon")[0].object == catalogue["Lemon"]


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("visual_search_versions", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_lists_activates_rolls_back_and_prunes(catalogue, trained, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_AUGMENT": 1}  # customer views: their bar shows
    out, _ = run("list")
    assert "No trained versions yet" in out
    version = trained("Shop v1")
    out, _ = run("list")
    assert "Shop v1" in out and "Trained" in out and "0.13" in out and "0.34" in out
    assert f"visual_search_versions activate {version.pk}" in out
    out, err = run("activate", str(version.pk))
    assert "Activated Shop v1" in out and "rollback" in out
    assert f"{len(NAMES)}/{len(NAMES)}" in err  # the progress bar
    # and the bar of its whitening's customer views, before the switch
    assert f"Customer views: 100%|##########| {len(NAMES)}/{len(NAMES)}" in err, err
    out, _ = call_status()
    assert f"model version #{version.pk}" in out and "rollback target" in out
    out, _ = run("prune")
    assert "Nothing to prune" in out  # the pretrained vectors are the rollback target
    out, _ = run("rollback")
    assert "pretrained model" in out
    out, _ = run("prune")
    assert f"Deleted {len(NAMES)} vectors of fingerprint {version.fingerprint}" in out
    assert not ImageEmbedding.objects.filter(fingerprint=version.fingerprint).exists()
    with pytest.raises(CommandError, match="Nothing to roll back"):
        run("rollback")
    with pytest.raises(CommandError, match="no model version 12345"):
        run("activate", "12345")


def test_prune_removes_the_faiss_files_of_pruned_versions_only(catalogue, trained, settings, tmp_path):
    pytest.importorskip("faiss")
    from django.contrib.contenttypes.models import ContentType

    folder = tmp_path / "index"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0,
                              "BACKENDS": {"default": {"BACKEND": "visual_search.backends.faiss.FaissBackend", "OPTIONS": {"PATH": str(folder)}}}}
    product = ContentType.objects.get_for_model(Product).pk
    version = trained("Shop v1")
    activate(version)
    assert search("Lemon")[0].object == catalogue["Lemon"]  # builds the version's index file
    rollback()
    assert search("Lemon")[0].object == catalogue["Lemon"]  # and the pretrained model's
    old, pretrained = folder / f"{product}-{version.fingerprint}.faiss", folder / f"{product}-{settings_fingerprint()}.faiss"
    assert old.exists() and pretrained.exists()
    building = trained("Next", seed=1)
    ModelVersion.objects.filter(pk=building.pk).update(status="building")  # its build has written a file already
    (folder / f"{product}-{building.fingerprint}.faiss").write_bytes(b"in progress")
    unrelated = folder / "notes.txt"
    unrelated.write_text("not ours")

    out, _ = run("prune")
    assert f"Deleted {len(NAMES)} vectors of fingerprint {version.fingerprint}" in out
    assert "Removed 1 index file of pruned versions" in out
    assert not old.exists() and not old.with_suffix(".lock").exists()
    assert pretrained.exists() and (folder / f"{product}-{building.fingerprint}.faiss").exists() and unrelated.exists()
    assert search("Lemon")[0].object == catalogue["Lemon"]  # the version in use still answers
    out, _ = run("prune")
    assert "Nothing to prune" in out and "index file" not in out


def call_status():
    out, err = io.StringIO(), io.StringIO()
    call_command("visual_search_status", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


URL = "/admin/visual_search/modelversion/"


def test_admin_lists_versions_and_activates_and_rolls_back(catalogue, trained, staff_client):
    version = trained("Shop v1")
    page = staff_client.get(URL).content.decode()
    assert "Shop v1" in page and "0.130 → 0.340" in page and "Train a new version" in page
    assert 'http-equiv="refresh"' not in page
    assert "/static/visual_search/admin.css" in page and 'class="button vs-tool-button"' in page  # no style="": CSP
    assert "Roll back to the previous version</button>" not in page  # nothing is active: nothing to go back to
    detail = staff_client.get(f"{URL}{version.pk}/change/").content.decode()
    assert "Precision@1 by product" in detail and "+0.210" in detail

    from django.conf import settings as django_settings
    from django.test import override_settings

    with override_settings(VISUAL_SEARCH={**django_settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 1}):  # without Celery, a catalogue too big to build in the request
        page = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True).content.decode()
        assert "Nothing was started" in page and f"manage.py visual_search_versions activate {version.pk}" in page
        assert ModelVersion.objects.get(pk=version.pk).status == "trained"
    response = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    assert "Searches now use Shop v1" in response.content.decode()
    assert ModelVersion.objects.get(pk=version.pk).status == "active"
    assert "Roll back to the previous version</button>" in staff_client.get(URL).content.decode()
    # Rolling back computes the images changed since the switch; without Celery, too many for the
    # request start nothing either (here: the pretrained model's vectors were pruned).
    pretrained = list(ImageEmbedding.objects.filter(fingerprint=settings_fingerprint()))
    ImageEmbedding.objects.filter(fingerprint=settings_fingerprint()).delete()
    with override_settings(VISUAL_SEARCH={**django_settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 1}):
        page = staff_client.post(f"{URL}rollback/", follow=True).content.decode()
        assert "Nothing was started" in page and "manage.py visual_search_versions rollback" in page
        assert current_fingerprint() == version.fingerprint
    ImageEmbedding.objects.bulk_create(pretrained)
    response = staff_client.post(f"{URL}rollback/", follow=True)
    assert "pretrained model" in response.content.decode()
    assert current_fingerprint() == settings_fingerprint()
    assert ModelVersion.objects.get(pk=version.pk).progress["stage"] == "done"  # it held the return: done, not building
    assert '<td class="field-progress_display">Retired</td>' in staff_client.get(URL).content.decode()
    response = staff_client.post(f"{URL}rollback/", follow=True)
    assert "Nothing to roll back" in response.content.decode()
    assert staff_client.get(f"{URL}rollback/").status_code == 403


def test_admin_shows_a_version_that_is_not_in_progress_as_what_it_is(staff_client, db):
    """A stage left by work that ended (a database of an earlier release kept "building" on a
    retired version) is not shown as if it were still running."""
    retired = ModelVersion.objects.create(label="Old", status="retired", progress={"stage": "building", "done": 6, "total": 6, "keep_previous": True})
    failed = ModelVersion.objects.create(label="Again", status="retired", progress={"stage": "failed", "done": 2, "total": 6})
    trained_one = ModelVersion.objects.create(label="New", status="trained", progress={"stage": "trained", "done": 1, "total": 1})
    building = ModelVersion.objects.create(label="Next", status="building", progress={"stage": "building", "done": 2, "total": 6})
    page = staff_client.get(URL).content.decode()
    cells = {v.label: f'<td class="field-progress_display">{shown}</td>'
             for v, shown in ((retired, "Retired"), (failed, "failed"), (trained_one, "trained"), (building, "building 2/6"))}
    for label, cell in cells.items():
        assert cell in page, label
    detail = staff_client.get(f"{URL}{retired.pk}/change/").content.decode()
    assert "building" not in detail.split("field-progress_display", 1)[1][:200]


def test_admin_train_button_and_cancel(staff_client, monkeypatch, db):
    import visual_search.training

    started = []

    def start_training(model_label=None):
        started.append(model_label)
        return ModelVersion.objects.create(label="Adapted today", status="training", progress={"stage": "training", "done": 3, "total": 40})

    monkeypatch.setattr(visual_search.training, "start_training", start_training, raising=False)
    assert staff_client.get(f"{URL}train/").status_code == 403
    response = staff_client.post(f"{URL}train/", follow=True)
    page = response.content.decode()
    assert started == [None] and "Training started as “Adapted today”" in page
    # Follows the progress, but not by <meta http-equiv="refresh">, which reloaded every 5 s whatever
    # staff were doing (a screen reader read the page again from the top; a chosen action was lost):
    # a script reloads only while the page is idle, and says so with a button that stops it.
    assert "training 3/40" in page and 'http-equiv="refresh"' not in page
    assert 'src="/static/visual_search/admin_refresh.js" defer data-vs-refresh="5"' in page
    assert "This page updates itself every 5 seconds while a version is in progress." in page and 'data-vs-refresh-stop="Stop updating"' in page
    detail = staff_client.get(f"{URL}{ModelVersion.objects.get().pk}/change/").content.decode()
    assert 'http-equiv="refresh"' not in detail and 'data-vs-refresh="5"' in detail
    version = ModelVersion.objects.get()
    response = staff_client.post(URL, {"action": "cancel", "_selected_action": [version.pk]}, follow=True)
    assert "Cancel requested for 1 version" in response.content.decode()
    assert ModelVersion.objects.get().cancel_requested
    response = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    assert "still training" in response.content.decode()


def test_a_training_whose_process_died_can_be_cancelled(staff_client):
    """The web process training in a thread was restarted (a deploy, gunicorn's max-requests), or
    the OOM killer took `visual_search_train`: the version said "training" for ever, "Cancel" only
    set a flag no process read (while saying it stops within seconds), and it could not be deleted.
    One with no sign of life for STALLED_AFTER seconds is now marked cancelled at once."""
    import time

    from visual_search.training import jobs

    dead = ModelVersion.objects.create(
        label="Dead", status="training", progress={"stage": "training", "done": 3, "total": 40, "at": time.time() - 2 * jobs.STALLED_AFTER}
    )
    alive = ModelVersion.objects.create(label="Alive", status="training", progress={"stage": "training", "done": 3, "total": 40, "at": time.time()})
    response = staff_client.post(URL, {"action": "cancel", "_selected_action": [dead.pk, alive.pk]}, follow=True)
    page = response.content.decode()
    assert "Cancel requested for 1 version" in page
    assert "1 version had shown no progress for 15 minutes" in page and "marked cancelled" in page
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == "cancelled" and "no progress" in dead.error
    assert alive.status == "training" and alive.cancel_requested
    assert staff_client.get(f"{URL}{dead.pk}/delete/").status_code == 200  # staff can now tidy it away


def test_a_stalled_training_says_so_in_the_list_and_the_command(staff_client):
    """A dead training read "training 3/40" in the admin's list and `visual_search_versions list`
    for ever: staff waited; it now says its process has stopped and what to do."""
    import time
    from io import StringIO

    from django.core.management import call_command

    from visual_search.training import jobs

    ModelVersion.objects.create(label="Dead", status="training", progress={"stage": "training", "done": 3, "total": 40, "at": time.time() - 2 * jobs.STALLED_AFTER})
    ModelVersion.objects.create(label="Alive", status="training", progress={"stage": "training", "done": 5, "total": 40, "at": time.time()})
    page = staff_client.get(URL).content.decode()
    assert page.count("no progress for over 15 minutes: its process has stopped; select it and Cancel") == 1
    assert "training 5/40" in page
    out = StringIO()
    call_command("visual_search_versions", "list", stdout=out)
    dead_line = next(line for line in out.getvalue().splitlines() if "Dead" in line)
    assert "its process has stopped; cancel it in the admin" in dead_line
    assert "has stopped" not in next(line for line in out.getvalue().splitlines() if "Alive" in line)


def test_training_progress_carries_a_sign_of_life():
    from visual_search.training import jobs

    version = ModelVersion.objects.create(label="Adapted", status="training")
    jobs._Reporter(version).progress("features", 1, 10)
    version.refresh_from_db()
    assert not jobs.stalled(version) and version.progress["at"] > 0


def test_each_process_reads_the_active_version_at_most_every_refresh_interval(trained, settings, django_assert_max_num_queries):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 60}
    version = trained()
    assert current_fingerprint() == settings_fingerprint()
    ModelVersion.objects.filter(pk=version.pk).update(status="active")  # another process switched
    with django_assert_max_num_queries(0):
        assert current_fingerprint() == settings_fingerprint()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    assert current_fingerprint() == version.fingerprint


WORSE = {"before": {"p_at_1": 0.4, "p_at_10": 0.3}, "after": {"p_at_1": 0.3, "p_at_10": 0.35}}


def test_a_version_that_does_not_beat_the_model_in_use_is_refused_unless_forced(catalogue, trained):
    version = trained("Worse", metrics=WORSE)
    with pytest.raises(VersionError, match=r"Not activating Worse: .* first 30\.0% of the time, the pretrained model 40\.0%"):
        activate(version)
    assert ModelVersion.objects.get(pk=version.pk).status == "trained"
    assert current_fingerprint() == settings_fingerprint()  # nothing switched, nothing computed
    assert not ImageEmbedding.objects.filter(fingerprint=version.fingerprint).exists()
    with pytest.raises(CommandError, match="Not activating Worse"):
        run("activate", str(version.pk))
    out, _ = run("activate", str(version.pk), "--force")
    assert "Activated Worse" in out and current_fingerprint() == version.fingerprint


def test_a_refused_version_that_is_faster_says_how_much(catalogue, trained):
    version = trained("Distilled", metrics={**WORSE, "passes": {"before": [4, 224], "after": [1, 224]}})
    with pytest.raises(VersionError, match=r"4\.0x faster \(1 VGG16 pass at 224 px, against 4 at 224 px\)"):
        activate(version)
    slower = trained("Slower", seed=1, metrics={**WORSE, "passes": {"before": [1, 160], "after": [1, 224]}})
    with pytest.raises(VersionError) as refused:
        activate(slower)
    assert "faster" not in str(refused.value)


def test_admin_shows_what_a_distilled_version_costs_and_how_close_it_came(catalogue, trained, staff_client):
    metrics = {**WORSE, "options": {"objective": "distil"}, "passes": {"before": [4, 224], "after": [1, 224]},
               "agreement": {"before": 0.788, "after": 0.88}}
    version = trained("Distilled", metrics=metrics)
    page = staff_client.get(f"{URL}{version.pk}/change/").content.decode()
    assert "VGG16 passes per image" in page and "4 × 224 px" in page and "1 × 224 px" in page and "4.0x faster" in page
    assert "Agreement with the model in use" in page and "0.788" in page and "+0.092" in page
    assert "distil (one pass learns the views" in page
    # Each figure's name heads its row (a screen reader says which figure a number is); no empty header.
    assert '<th scope="row">VGG16 passes per image</th>' in page and '<th scope="row">Objective</th>' in page
    assert "<th></th>" not in page and '<th scope="col">Before</th>' in page


def test_a_refusal_says_whether_the_difference_is_within_the_noise(catalogue, trained, staff_client):
    within = {"p_at_1": -0.037, "standard_error": 0.03, "photos": 81, "within_noise": True}
    version = trained("Close", metrics={**WORSE, "difference": within})
    with pytest.raises(VersionError, match=r"40\.0%; it is not shown to be better\. The difference, -3\.7 points, is within the noise of 81 photos \(one standard error: 3\.0 points\)"):
        activate(version)
    beyond = {"p_at_1": -0.1, "standard_error": 0.02, "photos": 296, "within_noise": False}
    worse = trained("Worse", seed=1, metrics={**WORSE, "difference": beyond})
    with pytest.raises(VersionError, match=r"customers would get worse results\. The difference, -10\.0 points, is more than the noise of 296 photos"):
        activate(worse)
    with pytest.raises(VersionError) as refused:  # a version trained before the figure existed
        activate(trained("Old", seed=2, metrics=WORSE))
    assert "noise" not in str(refused.value)
    listing = staff_client.get(URL).content.decode()
    assert "not better, within the noise" in listing and "(not better)" in listing
    page = staff_client.get(f"{URL}{version.pk}/change/").content.decode()
    assert "Precision@1 change, paired" in page and "-0.037 ± 0.030</span> (within the noise)" in page


def test_a_version_must_beat_the_active_version_too(catalogue, trained):
    activate(trained("Good", seed=0, metrics={"before": {"p_at_1": 0.1}, "after": {"p_at_1": 0.5}}))
    with pytest.raises(VersionError, match=r"Good 50\.0%"):
        activate(trained("Less good", seed=1, metrics={"before": {"p_at_1": 0.1}, "after": {"p_at_1": 0.4}}))


def test_admin_says_which_versions_are_better_and_refuses_a_worse_one(catalogue, trained, staff_client):
    version = trained("Worse", metrics=WORSE)
    page = staff_client.get(URL).content.decode()
    assert "0.400 → 0.300</span> <strong>(not better)</strong>" in page
    response = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    [refusal] = [str(m) for m in response.context["messages"]]
    # Why (the figures compared), and what staff can do here: the forcing action, not a command line.
    assert refusal.startswith("Not activating Worse: on its held-out photos it puts the right product first 30.0% of the time, the pretrained model 40.0%")
    assert "choose the action “Activate the selected version even if its figures are not better”" in refusal
    assert "manage.py" not in refusal and "--force" not in refusal
    assert ModelVersion.objects.get(pk=version.pk).status == "trained"
    from django.conf import settings as django_settings
    from django.test import override_settings

    with override_settings(VISUAL_SEARCH={**django_settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 1}):  # too big for the request, and refused anyway: the refusal is what helps
        page = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True).content.decode()
        assert "Not activating Worse" in page and "Nothing was started" not in page
    response = staff_client.post(URL, {"action": "activate_anyway", "_selected_action": [version.pk]}, follow=True)
    assert "Searches now use Worse" in response.content.decode()
    assert current_fingerprint() == version.fingerprint


def test_german_staff_read_a_refusal_and_the_progress_in_german(catalogue, trained, staff_client, settings):
    """The admin's refusal began in English ("Not activating Worse: ... 30.0% of the time") and went
    on in German; "Cannot activate" and the progress column ("building 2/6") were English too."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "de"
    version = trained("Worse", metrics={**WORSE, "difference": {"p_at_1": -0.1, "standard_error": 0.02, "photos": 296, "within_noise": False}})
    response = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    [refusal] = [str(m) for m in response.context["messages"]]
    assert refusal.startswith("Worse wird nicht aktiviert:") and "30,0\u00a0%" in refusal and "40,0\u00a0%" in refusal, refusal
    assert "das vortrainierte Modell" in refusal and "-10,0 Punkten" in refusal and "Not activating" not in refusal
    ModelVersion.objects.create(label="Next", status="building", progress={"stage": "building", "done": 2, "total": 6})
    listing = staff_client.get(URL).content.decode()
    with translation.override("de"):
        building = translation.pgettext("version stage", "building")
    assert building != "building" and f"{building} 2/6" in listing and "building 2/6" not in listing
    response = staff_client.post(URL, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    [busy] = [str(m) for m in response.context["messages"]]
    assert busy.startswith("Ein Wechsel läuft bereits (Next ") and "2/6 Bilder" in busy, busy


def test_german_staff_read_a_version_s_figures_with_decimal_commas(catalogue, trained, staff_client, settings):
    """The figures read "0.400 → 0.300", "+0.092" and "4.0x faster" in a German admin."""
    settings.LANGUAGE_CODE = "de"
    metrics = {**WORSE, "passes": {"before": [4, 224], "after": [1, 224]}, "agreement": {"before": 0.788, "after": 0.88},
               "difference": {"p_at_1": -0.037, "standard_error": 0.03, "photos": 81, "within_noise": True}}
    version = trained("Distilled", metrics=metrics)
    listing = staff_client.get(URL).content.decode()
    assert "0,400 → 0,300" in listing and "0.400" not in listing
    page = staff_client.get(f"{URL}{version.pk}/change/").content.decode()
    assert "0,788" in page and "+0,092" in page and "4,0-mal schneller" in page and "-0,037 ± 0,030" in page
    assert "0.788" not in page and "4.0x" not in page


def test_a_shop_on_mysql_is_not_warned_about_the_one_active_version_constraint(monkeypatch):
    """MySQL and MariaDB have no partial unique index: Django printed "models.W036 MariaDB does not
    support unique constraints with conditions" on every manage.py command of such a shop, which it
    could silence only for its own models as well. The switch's row locks keep one version active."""
    from django.db import connection

    monkeypatch.setattr(connection.features, "supports_partial_indexes", False)
    assert [e.id for e in ModelVersion.check(databases=["default"]) if e.id == "models.W036"] == []
