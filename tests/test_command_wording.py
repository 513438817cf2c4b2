"""The management commands' counts, read by a shop's staff: each noun agrees with its count
("Queued 1 of 1 image", "2 images could not be read"), with one item and with several."""

import io
from dataclasses import replace

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.utils import translation
from telegram.error import NetworkError

import visual_search
from tests.conftest import catalogue_image
from tests.testapp.models import Product
from visual_search.contrib.telegram import client as telegram_client
from visual_search.contrib.telegram.management.commands.visual_search_telegram import Command as TelegramCommand
from visual_search.contrib.whatsapp.management.commands.visual_search_whatsapp import Command as WhatsAppCommand
from visual_search.management.commands import visual_search_duplicates as duplicates_command
from visual_search.management.commands import visual_search_rebuild_index as rebuild_command
from visual_search.management.commands import visual_search_reindex as reindex_command
from visual_search.management.commands import visual_search_train as train_command
from visual_search.management.commands import visual_search_versions as versions_command
from visual_search.models import ImageEmbedding, ModelVersion, Whitening
from visual_search.ranking import CHANCE_CALIBRATION, Calibration
from visual_search.serving import current_fingerprint
from visual_search.versions import Pruned
from visual_search.whitening import describe_scores

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def reindexing(monkeypatch, total, counts=None, raises=None, done=0):
    """The reindex command over ``total`` selected images, its work replaced by ``counts`` or ``raises``."""

    def work(model, only, asynchronous, force=False, progress=None, before_fit=None, fit_progress=None, vectors=None):
        if progress:
            progress(done)
        if raises:
            raise raises
        return {"embedded": 0, "unchanged": 0, "failed": 0, "removed": 0, "retry": 0, "whitened": 0, **(counts or {})}

    monkeypatch.setattr(reindex_command, "count_pks", lambda model, selection: total)
    monkeypatch.setattr(reindex_command, "reindex", work)
    monkeypatch.setattr(reindex_command, "celery_app_missing", lambda: False)


@pytest.mark.parametrize("total, said", [(1, "Queued 1 of 1 image for"), (2, "Queued 2 of 2 images for")])
def test_reindex_async_counts_the_images_queued(monkeypatch, total, said):
    reindexing(monkeypatch, total, {"queued": total})
    assert said in run("visual_search_reindex", "--async")


@pytest.mark.parametrize("total, said", [
    (1, "Queued 0 of 1 image for the Celery workers; 1 image stays pending for the sweep."),
    (2, "Queued 0 of 2 images for the Celery workers; 2 images stay pending for the sweep."),
    (3, "Queued 2 of 3 images for the Celery workers; 1 image stays pending for the sweep."),
])
def test_reindex_async_that_queues_too_few_counts_those_left(monkeypatch, total, said):
    reindexing(monkeypatch, total, {"queued": 2 if total == 3 else 0})
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "--async")
    assert str(raised.value).startswith(said)


@pytest.mark.parametrize("total, said", [(1, "Interrupted after 0 of 1 image."), (2, "Interrupted after 1 of 2 images.")])
def test_reindex_interrupted_counts_the_images(monkeypatch, total, said):
    reindexing(monkeypatch, total, raises=KeyboardInterrupt, done=total - 1)
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "--verbosity", "0")
    assert str(raised.value).startswith(said)


@pytest.mark.parametrize("retry, said", [(1, "1 image could not be read"), (2, "2 images could not be read")])
def test_reindex_counts_the_images_it_could_not_read(monkeypatch, retry, said):
    reindexing(monkeypatch, 2, {"embedded": 2 - retry, "retry": retry})
    with pytest.raises(CommandError) as raised:
        run("visual_search_reindex", "--verbosity", "0")
    assert str(raised.value).startswith(said)


@pytest.mark.parametrize("whitened, said", [(1, "learned again for 1 model."), (2, "learned again for 2 models.")])
def test_reindex_counts_the_models_whose_whitening_it_learned(monkeypatch, whitened, said):
    reindexing(monkeypatch, 2, {"embedded": 2, "whitened": whitened})
    assert said in run("visual_search_reindex", "--verbosity", "0")


@pytest.mark.parametrize("rows, said", [(1, "Deleted 1 vector of fingerprint old1."), (2, "Deleted 2 vectors of fingerprint old1.")])
def test_versions_prune_counts_the_vectors_deleted(monkeypatch, rows, said):
    monkeypatch.setattr(versions_command, "rollback_fingerprint", lambda: None)
    monkeypatch.setattr(versions_command, "prune", lambda: Pruned({"old1": rows}))
    assert said in run("visual_search_versions", "prune")


@pytest.mark.parametrize("total, said", [(0, "0 images checked."), (1, "1 image checked."), (2, "2 images checked.")])
def test_versions_activate_counts_the_images_checked(monkeypatch, total, said):
    version = ModelVersion(pk=7, label="Adapted #7", fingerprint="f7", status=ModelVersion.Status.ACTIVE, progress={"total": total})
    monkeypatch.setattr(versions_command, "activate", lambda pk, progress=None, force=False, fit_progress=None: version)
    assert said in run("visual_search_versions", "activate", "7")


@pytest.fixture
def catalogue(make_product):
    with visual_search.pause_indexing(reindex_on_exit=False):
        return [make_product(name, catalogue_image(name)) for name in ["Lemon", "Lime", "Mango"]]


def failing(products, error="This file is not an image."):
    ImageEmbedding.objects.filter(object_id__in=[str(p.pk) for p in products]).update(status="failed", error=error)


def test_status_speaks_of_one_failed_image_as_it(catalogue, settings):
    failing(catalogue[:1], "The image file 'p/Lemon.jpg' is missing from storage.")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out = run("visual_search_status")
    assert "1 image failed: `manage.py visual_search_status --failed` lists why; nothing retries it by itself. Once the image " \
           "(or the storage) is fixed, `manage.py visual_search_reindex --only failed` does it again." in out
    assert "It is missing from storage: if the files" in out


def test_status_speaks_of_several_failed_images_as_them(catalogue, settings):
    failing(catalogue[:1], "The image file 'p/Lemon.jpg' is missing from storage.")
    failing(catalogue[1:2])
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out = run("visual_search_status")
    assert "2 images failed: `manage.py visual_search_status --failed` lists why; nothing retries them by itself. Once the " \
           "images (or the storage) are fixed, `manage.py visual_search_reindex --only failed` does them again." in out
    assert "1 of them is missing from storage: if the files" in out


class FilledBackend:
    reads_rows = reset_drops_everything = False

    def __init__(self, count):
        self.count = count

    def rebuild(self, rows, progress=None):
        return self.count


@pytest.mark.parametrize("count, said", [(0, "filled: 0 stored vectors."), (1, "filled: 1 stored vector."), (2, "filled: 2 stored vectors.")])
def test_rebuild_index_counts_the_vectors(monkeypatch, count, said):
    monkeypatch.setattr(rebuild_command, "get_backend", lambda alias: FilledBackend(count))
    assert said in run("visual_search_rebuild_index", "--verbosity", "0")


@pytest.mark.parametrize("count, said", [(1, "1 possible duplicate pair (threshold"), (2, "2 possible duplicate pairs (threshold")])
def test_duplicates_counts_the_pairs(monkeypatch, count, said):
    monkeypatch.setattr(duplicates_command, "find_pairs", lambda *args, **kwargs: [object()] * count)
    monkeypatch.setattr(duplicates_command.Command, "_table", lambda self, pairs: None)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:  # pairs found: exit status 1, for scripts
        call_command("visual_search_duplicates", stdout=out, verbosity=0)
    assert exited.value.code == 1 and said in out.getvalue()


@pytest.mark.parametrize("n, said", [
    (1, ["on 1 image of 1 product in 3 s (1 epoch).", "Measured on 1 held-out image (searched", "over 1 photo: within the noise"]),
    (2, ["on 2 images of 2 products in 3 s (2 epochs).", "Measured on 2 held-out images (searched", "over 2 photos: within the noise"]),
])
def test_train_counts_the_images_products_epochs_and_photos(monkeypatch, n, said):
    def trained(pk, progress, interrupted):
        version = ModelVersion.objects.get(pk=pk)
        version.status, version.fingerprint = ModelVersion.Status.TRAINED, "f1"
        version.metrics = {
            "training_images": n, "products": n, "seconds": 3, "epochs_run": n, "held_out_images": n,
            "before": {"p_at_1": 0.5}, "after": {"p_at_1": 0.5},
            "difference": {"p_at_1": 0.0, "standard_error": 0.1, "photos": n, "within_noise": True},
        }
        return version

    monkeypatch.setattr(train_command, "run_training", trained)
    out = run("visual_search_train", "--verbosity", "0")
    assert all(line in out for line in said), out


def test_telegram_out_of_reach_says_what_to_check(settings, monkeypatch):
    def unreachable(work):
        raise NetworkError("httpx.ConnectError: [Errno -2] Name or service not known")

    settings.VISUAL_SEARCH_TELEGRAM = {**getattr(settings, "VISUAL_SEARCH_TELEGRAM", {}), "API_URL": "https://api.telegram.org/"}
    monkeypatch.setattr(telegram_client, "call", unreachable)
    with pytest.raises(CommandError) as raised:
        run(TelegramCommand(), "info")  # the contrib app need not be installed
    assert str(raised.value) == (
        "NetworkError: httpx.ConnectError: [Errno -2] Name or service not known. This machine did not get an answer "
        "from Telegram's Bot API at https://api.telegram.org: check that it reaches it over HTTPS (a firewall, a proxy), "
        "then run this command again."
    )


def test_whatsapp_out_of_reach_says_what_to_check(settings):
    settings.VISUAL_SEARCH_WHATSAPP = {
        **getattr(settings, "VISUAL_SEARCH_WHATSAPP", {}), "API_URL": "http://127.0.0.1:9", "PHONE_NUMBER_ID": "1",
        "ACCESS_TOKEN": "t",
    }
    with pytest.raises(CommandError) as raised:
        run(WhatsAppCommand(), "info")  # the contrib app need not be installed
    said = str(raised.value)
    assert said.startswith("ConnectionError: Graph API GET http://127.0.0.1:9/") and "Connection refused" in said
    assert said.endswith(
        ". This machine did not get an answer from the Graph API: check that it reaches that URL over HTTPS "
        "(a firewall, a proxy), then run this command again."
    )


def tuning(calibration):
    """A whitening row of the current fingerprint for testapp.Product, with ``calibration``."""

    return Whitening.objects.create(
        result_type=ContentType.objects.get_for_model(Product), fingerprint=current_fingerprint(), dimensions=1,
        trained_on=1, mean=np.zeros(1, np.float32).tobytes(), projection=np.zeros(1, np.float32).tobytes(),
        calibration=calibration.as_dict(),
    )


@pytest.mark.parametrize("searches, said", [
    (0, "Not calibrated: 0 searches with a known answer, 20 needed"),
    (1, "Not calibrated: 1 search with a known answer, 20 needed"),
    (2, "Not calibrated: 2 searches with a known answer, 20 needed"),
])
def test_status_counts_the_searches_that_calibrate(searches, said):
    tuning(replace(CHANCE_CALIBRATION, fitted_on=searches))
    assert f"Scores of testapp.product: {said}" in run("visual_search_status")


@pytest.mark.parametrize("images, said", [(1, "about 1 image each"), (1.5, "about 1.5 images each"), (2, "about 2 images each")])
@pytest.mark.parametrize("prior", [0.0, 0.5])  # the default curve mixed in, or (fitted before) not
def test_status_counts_the_images_per_product(images, said, prior):
    tuning(Calibration(0.05, 0.3, fitted_on=300, error=0.06, images_per_product=images, prior=prior))
    assert f"Your products have {said}:" in run("visual_search_status")


@pytest.mark.parametrize("language, one, two", [
    ("de", ["1 Suche mit", "etwa 1 Bild:"], ["2 Suchen mit", "etwa 2 Bilder:"]),
    ("fr", ["1 recherche dont", "environ 1 image chacun"], ["2 recherches dont", "environ 2 images chacun"]),
])
def test_the_score_notes_counts_agree_in_german_and_french(language, one, two):
    """The admin and the dashboards show the same notes in the staff's language."""

    def notes(n):
        chance = replace(CHANCE_CALIBRATION, fitted_on=n)
        few = Calibration(0.05, 0.3, fitted_on=300, error=0.06, images_per_product=n, prior=0.5)
        return " ".join(describe_scores(Whitening(calibration=c.as_dict())) for c in (chance, few))

    with translation.override(language):
        assert all(words in notes(1) for words in one) and all(words in notes(2) for words in two)


@pytest.mark.parametrize("label, said", [
    ("Adapted #7", "Activated Adapted #7 (fingerprint f7): searches use it now."),  # not "Adapted #7 (#7, ..."
    ("Spring catalogue", "Activated Spring catalogue (#7, fingerprint f7): searches use it now."),
])
def test_versions_names_a_version_once(monkeypatch, label, said):
    version = ModelVersion(pk=7, label=label, fingerprint="f7", status=ModelVersion.Status.ACTIVE, progress={"total": 2})
    monkeypatch.setattr(versions_command, "activate", lambda pk, progress=None, force=False, fit_progress=None: version)
    assert said in run("visual_search_versions", "activate", "7")
    version.status = ModelVersion.Status.BUILDING
    monkeypatch.setattr(versions_command, "activate", lambda pk, asynchronous=False, force=False: version)
    queued = run("visual_search_versions", "activate", "7", "--async")
    assert f"Queued: the workers compute the vectors of {label}{'' if '#' in label else ' (#7)'}, then" in queued


def test_train_s_measuring_bar_has_a_unit(monkeypatch):
    """An empty unit showed "[00:05<00:00,  5.00s/]" at the end of the training."""
    def measured(pk, progress, interrupted):
        progress("evaluating", 0, 1)
        progress("evaluating", 1, 1)
        raise KeyboardInterrupt  # the bars are all this test reads

    monkeypatch.setattr(train_command, "run_training", measured)
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        call_command("visual_search_train", stdout=io.StringIO(), stderr=err)
    shown = err.getvalue()
    assert "Measuring: 100%" in shown and ("pass/s]" in shown or "s/pass]" in shown)
    assert "/]" not in shown and " ?/s]" not in shown


def test_rebuild_index_with_nothing_stored_says_what_to_run():
    """A fresh install's "filled: 0 stored vectors. No embedding was recomputed." left staff there."""
    out = run("visual_search_rebuild_index", "--verbosity", "0")
    assert "filled: 0 stored vectors." in out or "on each search: 0 stored vectors." in out
    assert "No vector of any model is stored yet: `manage.py visual_search_reindex` computes them;" in out
    out = run("visual_search_rebuild_index", "--model", "testapp.Product", "--verbosity", "0")
    assert "No vector of testapp.Product is stored yet" in out


def test_duplicates_with_nothing_indexed_says_none_was_compared():
    """On a catalogue not indexed yet, "No possible duplicate images" alone read as a clean one."""
    out = run("visual_search_duplicates", "--verbosity", "0")
    assert out.startswith("No possible duplicate images (threshold ")
    assert "No image of any model has a vector of the current model yet, so none was compared: " \
           "`manage.py visual_search_reindex` computes them" in out
    assert "No image of testapp.Product has" in run("visual_search_duplicates", "--model", "testapp.Product", "--verbosity", "0")


def test_train_names_a_model_it_cannot_train_on_before_making_a_version():
    """`visual_search_train auth.User` made a version that failed with "images of at least 2
    products; found 0. Upload product images ...": no word that the model is not searchable."""
    with pytest.raises(CommandError, match=r"^auth\.User is not searchable: no registration in VISUAL_SEARCH\['MODELS'\] returns it\.$"):
        run("visual_search_train", "auth.User")
    assert not ModelVersion.objects.exists()


def test_train_takes_a_gallery_model_as_its_product_as_the_other_commands_do(monkeypatch):
    chosen = []

    def trained(pk, progress, interrupted):
        chosen.append(ModelVersion.objects.get(pk=pk).config["model"])
        raise KeyboardInterrupt  # what it was given is all this test reads

    monkeypatch.setattr(train_command, "run_training", trained)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        call_command("visual_search_train", "testapp.ProductImage", stdout=out, stderr=io.StringIO())
    assert chosen == ["testapp.Product"]
    assert "testapp.ProductImage's images are searched as testapp.Product: training on testapp.Product's images." in out.getvalue()


def test_train_async_says_follow_it_as_the_versions_command_does(monkeypatch):
    """The same advice read "Watch it with ..." here and "Follow it with ..." in visual_search_versions."""
    monkeypatch.setattr(train_command.queue, "use_celery", lambda: True)
    monkeypatch.setattr(train_command, "start_training", lambda label, **options: ModelVersion(pk=4, label="Adapted #4"))
    out = run("visual_search_train", "--async")
    assert "Training version 4 started in the background.\nFollow it with `manage.py visual_search_versions list`" in out
