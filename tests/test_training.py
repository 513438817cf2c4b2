"""Training an adapted model from the shop's own images (visual_search.training).

Real photos of 6 products (a catalogue image and 4 shop photos each), the seeded random 64-px
VGG16 of the test settings, one or two epochs: the plumbing, not the quality (that is measured
by ``python -m benchmarks training``).
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from tests.conftest import catalogue_image, photos
from visual_search.models import ModelVersion

PRODUCTS = ["Kiwi", "Anjou", "Banana", "Lime", "Red-Bell-Pepper", "Arla-Standard-Milk"]
# The classifying objective; distillation (the default) has its own tests below.
FAST = {"objective": "classify", "epochs": 1, "image_size": 64, "dims": 16, "augmented_views": 1, "held_out": 0.25}


@pytest.fixture
def shop(db, make_product, settings, request):
    from tests.testapp.models import ProductImage
    from visual_search.signals import pause_indexing

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING_CATEGORY_FIELD": "category", "TRAINING": FAST}
    shop_photos = photos("train")
    products = []
    # Indexed only where a test compares with the stored vectors of the pretrained model.
    with pause_indexing(reindex_on_exit=bool(getattr(request, "param", False))):
        for n, name in enumerate(PRODUCTS):
            product = make_product(name, catalogue_image(name), category="Fruit" if n % 2 else "Dairy")
            for k, path in enumerate(shop_photos[name][:4]):
                image = ProductImage(product=product)
                image.image.save(f"{name}-{k}.jpg", ContentFile(path.read_bytes()), save=False)
                image.save()
            products.append(product)
    return products


def new_version(**options) -> ModelVersion:
    return ModelVersion.objects.create(label="test", status=ModelVersion.Status.TRAINING, config={"options": options})


def test_the_held_out_split_follows_the_seed_and_keeps_every_product_in_training(shop):
    from visual_search.training.dataset import hold_out, shop_items

    items = shop_items()
    assert len(items) == 6 * 5
    assert {i.category for i in items} == {"Fruit", "Dairy"}
    training, held = hold_out(items, 0.25, seed=0)
    again, held_again = hold_out(shop_items(), 0.25, seed=0)
    other = hold_out(shop_items(), 0.25, seed=1)[1]
    assert [i.key for i in held] == [i.key for i in held_again]
    assert {i.key for i in held} != {i.key for i in other}
    assert {i.product for i in training} == {str(p.pk) for p in shop}
    assert len(held) == 6  # round(5 * 0.25) = 1 per product
    assert not {i.key for i in held} & {i.key for i in training}


@pytest.mark.parametrize("shop", [True], indirect=True)
def test_training_saves_a_version_with_its_figures_and_search_is_unchanged(shop):
    from visual_search.serving import current_fingerprint
    from visual_search.training.jobs import run_training

    fingerprint = current_fingerprint()
    seen = []
    version = run_training(new_version().pk, progress=lambda stage, done, total: seen.append(stage))
    assert version.status == ModelVersion.Status.TRAINED, version.error
    assert len(version.fingerprint) == 16 and version.fingerprint != fingerprint
    assert default_storage.exists(version.weights_file)
    metrics = version.metrics
    assert metrics["training_images"] == 24 and metrics["held_out_images"] == 6 and metrics["products"] == 6
    for key in ("p_at_1", "p_at_10", "category_p_at_1"):
        assert 0.0 <= metrics["after"][key] <= 1.0
    assert metrics["after"]["queries"] == 6
    # The images were indexed: "before" is the pretrained model's figures, from its stored vectors.
    assert metrics["before"]["queries"] == 6 and 0.0 <= metrics["before"]["p_at_1"] <= 1.0
    assert {"features", "training", "evaluating"} <= set(seen)
    assert version.config["image_size"] == 64 and version.config["dims"] == 16
    assert current_fingerprint() == fingerprint  # trained is not active

    # The inference model built from the saved file gives the vectors training evaluated.
    from visual_search.embeddings.images import prepare
    from visual_search.embeddings.adapted import build_embedding_model, build_head, build_trunk
    from visual_search.training.trainer import embed_maps

    path = default_storage.path(version.weights_file)
    model = build_embedding_model(version.config, path, precision="float32")
    data = catalogue_image("Lime").read_bytes()
    x = prepare(data, size=64, max_pixels=10**8, allowed_formats=["JPEG"])[None]
    trunk, vgg16 = build_trunk(version.config, precision="float32")
    head = build_head(version.config, vgg16)
    head.load_weights(path)
    expected = embed_maps(head, np.asarray(trunk(x)).astype(np.float16))
    got = np.asarray(model(x))
    assert got.shape == (1, 16)
    assert np.allclose(np.linalg.norm(got), 1.0, atol=1e-4)
    assert float(got[0] @ expected[0]) > 0.999


def test_a_cancelled_training_saves_nothing(shop):
    from visual_search.training.jobs import run_training

    version = new_version()
    ModelVersion.objects.filter(pk=version.pk).update(cancel_requested=True)
    version = run_training(version.pk)
    assert version.status == ModelVersion.Status.CANCELLED
    assert version.fingerprint == "" and version.weights_file == ""


def test_interrupting_the_command_stops_it_cleanly(shop, capsys):
    from visual_search.training import jobs

    version = new_version()
    calls = {"n": 0}

    def interrupted():
        calls["n"] += 1
        return calls["n"] > 3

    assert jobs.run_training(version.pk, interrupted=interrupted).status == ModelVersion.Status.CANCELLED


def test_too_few_products_fail_with_a_reason(db, make_product, settings):
    from visual_search.signals import pause_indexing
    from visual_search.training.jobs import run_training

    with pause_indexing():
        make_product("Only", catalogue_image("Lime"))
    version = run_training(new_version().pk)
    assert version.status == ModelVersion.Status.FAILED
    assert "at least 2 products" in version.error


def test_too_few_products_say_training_failed_once(db, make_product):
    """"Training failed: Training needs images of at least 2 products", in the command's output and
    in what the admin says of the version (activating it): the word once, then why."""
    from django.core.management.base import CommandError

    from visual_search.signals import pause_indexing
    from visual_search.versions import VersionError, activate

    with pause_indexing():
        make_product("Only", catalogue_image("Lime"))
    with pytest.raises(CommandError) as failed:
        call_command("visual_search_train", "--verbosity", "0")
    said = str(failed.value)
    assert said.startswith("Training failed: Images of at least 2 products are needed; found 1 product.")
    assert said.lower().count("training") == 1
    version = ModelVersion.objects.get(status=ModelVersion.Status.FAILED)
    with pytest.raises(VersionError) as refused:
        activate(version)
    assert "its training failed (Images of at least 2 products" in str(refused.value)
    assert str(refused.value).lower().count("training") == 1


def test_command_reports_before_and_after_and_skips_a_broken_image(shop, make_product, capsys, caplog):
    from visual_search.models import ImageEmbedding
    from visual_search.signals import pause_indexing

    with pause_indexing():
        make_product("Broken", b"<html>not an image</html>", category="Dairy")
    assert not ImageEmbedding.objects.filter(status="ready").exists()  # no stored vectors: no "before" to show
    with caplog.at_level("INFO", logger="visual_search"):
        call_command("visual_search_train", "--epochs", "2", "--seed", "3", "--time-limit", "0.001")
    out = capsys.readouterr().out
    assert "Training stops after 1 epoch: another would pass the time limit of 0.001 s." in caplog.text  # not "1 epochs"
    assert "Trained version" in out and " s (1 epoch).\n" in out  # not "(1 epochs)"
    assert "VGG16 passes per image 1 x 64 px -> 1 x 64 px\n" in out  # classifying at the same size: no faster
    assert "product precision@1" in out and "->" in out
    assert "Search is unchanged" in out and "visual_search_versions activate" in out
    assert "run visual_search_reindex to compare" in out
    assert "Training stopped early, after 1 of 2 epochs: another would have passed the time limit of 0.001 s. The figures above are of that one." in out
    assert "raise --time-limit, or lower --epochs (--epochs 1 fits this time)" in out
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.TRAINED  # the broken image was left out, not fatal
    assert version.metrics["options"]["seed"] == 3 and version.metrics["options"]["epochs"] == 2
    assert version.metrics["epochs_run"] == 1  # a second epoch would have passed the time limit


def test_start_training_runs_in_the_background_without_celery(shop, transactional_db):
    import time

    from visual_search.training.jobs import start_training

    version = start_training(epochs=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.status != ModelVersion.Status.TRAINING:
            break
        time.sleep(0.5)
    assert version.status == ModelVersion.Status.TRAINED, (version.status, version.error, version.progress)
    assert version.progress["stage"] == "trained"


def test_train_async_without_celery_trains_in_the_command_and_leaves_no_version_training(shop, capsys):
    # `visual_search_train --async` with no broker started a daemon thread and returned: the
    # command's process ended, the thread with it, and the version said "Training" with nothing
    # training it (until, 15 minutes on, "its process has stopped").
    call_command("visual_search_train", "--async", "--epochs", "1")
    out = capsys.readouterr().out
    assert "training here, in this process" in out
    assert "Trained version" in out and "started in the background" not in out
    assert ModelVersion.objects.get().status == ModelVersion.Status.TRAINED


def test_train_and_activate_switches_search_to_the_new_vectors(shop, capsys):
    from visual_search.serving import current_fingerprint
    from visual_search.models import ImageEmbedding
    from visual_search.search import find_similar

    # One epoch on 30 images need not beat the pretrained model: --force switches all the same.
    call_command("visual_search_train", "--epochs", "1", "--activate", "--force")
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.ACTIVE
    out = capsys.readouterr().out
    assert "Search now uses version" in out
    assert "stopped early" not in out  # no --time-limit: every epoch ran, nothing to say
    assert current_fingerprint() == version.fingerprint
    assert ImageEmbedding.objects.ready(version.fingerprint).count() == 30
    assert ImageEmbedding.objects.ready(version.fingerprint).first().dimensions == 16
    results = find_similar(shop[0], limit=3)
    assert len(results) == 3


@pytest.mark.parametrize(
    "blocks, trunk_output, trained",
    [([4], "block3_pool", {"block4_conv1", "block4_conv3"}), ([4, 5], "block3_pool", {"block4_conv1", "block5_conv3"}), ([5], "block4_pool", {"block5_conv1"})],
)
def test_the_trained_blocks_decide_where_the_frozen_trunk_ends(blocks, trunk_output, trained):
    from visual_search.embeddings.adapted import build_embedding_model, build_head, build_trunk, trunk_layer

    config = {"weights": "random", "seed": 0, "image_size": 64, "dims": 8, "gem_p": 3.0, "trained_blocks": blocks}
    assert trunk_layer(config) == trunk_output
    trunk, vgg16 = build_trunk(config, precision="float32")
    assert trunk.output.shape[-1] == (256 if blocks[0] == 4 else 512)
    head = build_head(config, vgg16)
    names = {layer.name for layer in head.layers}
    assert trained <= names
    assert ("block5_conv1" in names) == (5 in blocks)
    # The trained blocks start from the base weights.
    first = f"block{blocks[0]}_conv1"
    assert np.array_equal(head.get_layer(first).get_weights()[0], vgg16.get_layer(first).get_weights()[0])
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    got = np.asarray(build_embedding_model(config, None, precision="float32")(x))
    assert got.shape == (2, 8) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)


def test_a_version_saved_before_trained_blocks_existed_still_trains_block_5_only():
    from visual_search.embeddings.adapted import trained_blocks, trunk_layer

    assert trained_blocks({}) == (5,) and trunk_layer({}) == "block4_pool"
    with pytest.raises(ValueError, match=r"\[4\], \[4, 5\] or \[5\]"):
        trained_blocks({"trained_blocks": [3, 4]})


def test_the_cosine_schedule_warms_up_then_decays_to_zero():
    from visual_search.training.trainer import TrainingOptions, _learning_rate

    options = TrainingOptions(epochs=4, warmup_epochs=0.5)
    schedule = _learning_rate(options, 1e-3, total_steps=40, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 5, 20, 40)]
    assert rates[0] == 0.0 and abs(rates[1] - 1e-3) < 1e-9
    assert 0 < rates[2] < 1e-3 and rates[3] < 1e-6
    assert _learning_rate(TrainingOptions(schedule="constant"), 1e-3, 40, 10) == 1e-3
    with pytest.raises(ValueError, match="cosine"):
        _learning_rate(TrainingOptions(schedule="step"), 1e-3, 40, 10)


def test_the_command_trains_the_blocks_asked_for_and_refuses_others(shop, capsys):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="use 4, 4,5 or 5"):
        call_command("visual_search_train", "--blocks", "3")
    call_command("visual_search_train", "--blocks", "4,5", "--epochs", "1")
    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.TRAINED, version.error
    assert version.config["trained_blocks"] == [4, 5]
    assert version.config["architecture"] == "vgg16-adapted-blocks4-5"


# -- distillation (the default objective) -------------------------------------------------------

def test_a_small_shop_distils_for_more_epochs_a_big_one_for_at_least_three():
    from visual_search.training.trainer import DISTIL_MIN_EPOCHS, distil_epochs

    assert distil_epochs(2721) == DISTIL_MIN_EPOCHS == 3  # the grocery benchmark's measured default
    assert distil_epochs(100_000) == 3
    assert distil_epochs(486) == 17  # the demo: about as many images seen as the benchmark's three epochs
    assert distil_epochs(486) * 486 >= 8000 > (distil_epochs(486) - 1) * 486
    assert distil_epochs(0) >= 3


def test_distilling_without_epochs_runs_as_many_as_its_images_call_for(shop, monkeypatch):
    """The default options: the epochs are chosen once the images with targets are known."""
    from visual_search.training import trainer
    from visual_search.training.dataset import shop_items

    items = shop_items()  # 30 images
    targets = np.random.default_rng(0).standard_normal((len(items), 512)).astype(np.float32)
    options = trainer.TrainingOptions(image_size=64)
    assert options.epochs is None
    monkeypatch.setattr(trainer, "DISTIL_IMAGES_SEEN", 100)  # 100 / 30 images: 4 epochs
    seen = []
    result = trainer.train(items, [], options, targets=targets, after_epoch=lambda epoch, _: seen.append(epoch))
    assert seen == [1, 2, 3, 4] and result.metrics["epochs_run"] == 4
    assert result.metrics["options"]["epochs"] == 4

def test_each_objective_has_its_own_defaults_and_explicit_options_win(settings):
    from visual_search.training.trainer import TrainingOptions

    distil = TrainingOptions()
    assert distil.objective == "distil" and distil.distil
    # IMAGE_SIZE is 64 here; a distillation's epochs depend on how many images it trains on.
    assert (distil.epochs, distil.image_size, distil.augmented_views, distil.learning_rate) == (None, 64, 0, 2e-4)
    classify = TrainingOptions(objective="classify")
    assert (classify.epochs, classify.image_size, classify.augmented_views, classify.learning_rate) == (8, 160, 2, 4e-4)
    assert TrainingOptions(epochs=2, image_size=96).epochs == 2 and TrainingOptions(epochs=2, image_size=96).image_size == 96
    with pytest.raises(ValueError, match="'distil', 'classify'"):
        TrainingOptions(objective="regress")
    assert TrainingOptions().dims == 512 and TrainingOptions(objective="classify").dims == 256
    with pytest.raises(ValueError, match="512 pooled channels.*objective 'classify'"):
        TrainingOptions(dims=128)


@pytest.mark.parametrize("shop", [True], indirect=True)
def test_distilling_teaches_one_pass_the_stored_vectors(shop, settings):
    from visual_search.embeddings.adapted import build_embedding_model
    from visual_search.embeddings.images import prepare
    from visual_search.training.jobs import run_training, teacher_vectors
    from visual_search.training.dataset import shop_items

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING": {"epochs": 3, "held_out": 0.25, "learning_rate": 1e-3}}
    targets = teacher_vectors(shop_items())
    assert targets.shape == (30, 512) and np.isfinite(targets).all()
    version = run_training(new_version().pk)
    assert version.status == ModelVersion.Status.TRAINED, version.error
    metrics = version.metrics
    assert metrics["options"]["objective"] == "distil"
    # A distilled network keeps the 512 pooled channels, at the serving input size, one view.
    assert version.config["dims"] == 512 and version.config["image_size"] == 64
    assert metrics["passes"] == {"before": [1, 64], "after": [1, 64]}
    # Training brought the one-pass vectors closer to the stored ones.
    agreement = metrics["agreement"]
    assert -1.0 <= agreement["before"] < agreement["after"] <= 1.0
    assert metrics["epoch_losses"][-1] < 1.0 and 0.0 <= metrics["after"]["p_at_1"] <= 1.0
    # The change in P@1, paired on the same held-out photos (6 here), with its noise.
    difference = metrics["difference"]
    assert difference["photos"] == metrics["after"]["queries"] == 6
    assert difference["p_at_1"] == pytest.approx(metrics["after"]["p_at_1"] - metrics["before"]["p_at_1"], abs=1e-3)
    assert difference["standard_error"] >= 0 and isinstance(difference["within_noise"], bool)
    assert "first_right" not in metrics["before"] and "first_right" not in metrics["after"]
    # The projection stayed the identity: the served model gives its pooled vector, unit length.
    path = default_storage.path(version.weights_file)
    model = build_embedding_model(version.config, path, precision="float32")
    x = prepare(catalogue_image("Lime").read_bytes(), size=64, max_pixels=10**8, allowed_formats=["JPEG"])[None]
    got = np.asarray(model(x))
    assert got.shape == (1, 512) and np.allclose(np.linalg.norm(got), 1.0, atol=1e-4)
    assert (got >= 0).all()  # pooled ReLU maps, not projected

    # Activated (forced: three epochs need not beat the model in use), it serves searches.
    from visual_search.models import ImageEmbedding
    from visual_search.search import find_similar
    from visual_search.serving import current_fingerprint
    from visual_search.versions import activate

    activate(version, force=True)
    assert current_fingerprint() == version.fingerprint
    assert ImageEmbedding.objects.ready(version.fingerprint).count() == 30
    assert len(find_similar(shop[0], limit=3)) == 3


def test_the_paired_difference_and_its_noise():
    from visual_search.training.evaluation import paired_difference

    before = {n: n < 50 for n in range(100)}  # right on 50 of 100 photos
    same = paired_difference(before, dict(before))
    assert same == {"p_at_1": 0.0, "standard_error": 0.0, "photos": 100, "within_noise": True}
    three_more = paired_difference(before, {n: n < 53 for n in range(100)})
    assert three_more["p_at_1"] == 0.03 and 0.015 < three_more["standard_error"] < 0.02 and three_more["within_noise"]
    twenty_more = paired_difference(before, {n: n < 70 for n in range(100)})
    assert twenty_more["p_at_1"] == 0.2 and not twenty_more["within_noise"]
    # Swapping which photos are right changes nothing on average but adds noise.
    swapped = paired_difference(before, {n: n >= 50 for n in range(100)})
    assert swapped["p_at_1"] == 0.0 and swapped["standard_error"] > 0.09 and swapped["within_noise"]
    assert paired_difference(before, {1000: True}) is None and paired_difference(None, before) is None


def test_distilling_without_stored_vectors_says_what_to_do(shop, settings):
    from visual_search.training.jobs import run_training

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING": {"epochs": 1, "held_out": 0.25}}

    version = run_training(ModelVersion.objects.create(label="t", status=ModelVersion.Status.TRAINING, config={"options": {"objective": "distil"}}).pk)
    assert version.status == ModelVersion.Status.FAILED
    assert "visual_search_reindex" in version.error and "classify" in version.error
    assert version.weights_file == ""


def test_distilling_from_vectors_of_another_kind_says_what_to_do(settings):
    from visual_search.training.dataset import Item, NotEnoughData
    from visual_search.training.trainer import TrainingOptions, train

    items = [Item(None, str(n), str(n % 3), None, lambda: b"") for n in range(6)]
    with pytest.raises(NotEnoughData, match="model in use gives 16-d ones.*rollback"):
        train(items, [], TrainingOptions(epochs=1), targets=np.ones((6, 16), dtype=np.float32))


def test_the_command_takes_the_objective(shop, settings):
    from django.core.management.base import CommandError

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING": {"held_out": 0.25}}

    with pytest.raises(CommandError, match="invalid choice"):
        call_command("visual_search_train", "--objective", "regress")
    with pytest.raises(CommandError, match="visual_search_reindex"):
        call_command("visual_search_train", "--objective", "distil", "--epochs", "1")
    with pytest.raises(CommandError, match="Training failed: dims=16: a distilled network keeps"):
        call_command("visual_search_train", "--objective", "distil", "--dims", "16")


@pytest.mark.parametrize("shop", [True], indirect=True)
def test_the_command_says_whether_the_change_is_more_than_the_noise(shop, settings, capsys):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING": {"held_out": 0.25, "epochs": 1}}
    call_command("visual_search_train")
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "difference" in line)
    assert "one standard error" in line and "over 6 photos" in line
    assert line.endswith(("within the noise", "more than the noise"))
    assert out.index("product precision@1") < out.index("difference") < out.index("product precision@10")


def test_a_hidden_product_s_photos_neither_train_nor_calibrate_a_version(shop, settings, monkeypatch):
    """A product customers are not shown (the shop's VISIBILITY rule) had its photos, its own and its
    gallery's, in the training data and among the int8 calibration images: a hidden product shaped
    the version customers search with. The data the trainer and the calibration get leave it out."""
    from tests.testapp.models import Product
    from visual_search.registry import Registration
    from visual_search.serving import calibration_inputs
    from visual_search.training.dataset import shop_items

    hidden = shop[0]
    Product.objects.filter(pk=hidden.pk).update(in_stock=False)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.in_stock"}
    items = shop_items()
    assert len(items) == 5 * 5 and str(hidden.pk) not in {item.product for item in items}

    class Extractor:  # no network: an image's "inputs" are the product it stands for
        def prepare(self, product):
            return np.array([[product]])

    monkeypatch.setattr(Registration, "read_image", lambda registration, obj: registration.result_pk(obj))
    calibrated = calibration_inputs(Extractor(), limit=100).ravel().tolist()
    assert len(calibrated) == 5 * 5 and hidden.pk not in calibrated
