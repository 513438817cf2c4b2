"""RUNTIME = "openvino" / "openvino-int8": the same vectors as TensorFlow's, from the same fingerprint.

The int8 network is calibrated on real grocery photos (the demo's catalogue) and must agree with the
unquantised one before it serves; when it cannot be calibrated or does not agree, the unquantised
OpenVINO network serves and the log says why.
"""

import logging

import numpy as np
import pytest

from tests.conftest import catalogue_image
from visual_search.embeddings import openvino_runtime
from visual_search.embeddings.extractor import Extractor
from visual_search.embeddings.spec import EmbeddingSpec

pytest.importorskip("openvino")

PRODUCTS = ["Lemon", "Banana", "Avocado", "Cabbage", "Alpro-Fresh-Soy-Milk", "Arla-Standard-Milk"]


@pytest.fixture
def spec(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VIEWS": ["full", "flip", "crop", "crop-flip"]}
    return EmbeddingSpec.from_settings()


@pytest.fixture(autouse=True)
def int8_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(openvino_runtime, "CACHE_DIR", str(tmp_path / "openvino"))
    return tmp_path / "openvino"


def photos() -> list[bytes]:
    return [catalogue_image(name).read_bytes() for name in PRODUCTS]


def calibrate(extractor: Extractor) -> np.ndarray:
    return np.concatenate([extractor.prepare(data) for data in photos()])


def vectors(extractor: Extractor) -> np.ndarray:
    return np.stack([extractor.embed_bytes(data) for data in photos()])


def test_openvino_gives_tensorflows_vectors(spec, monkeypatch):
    telemetry = pytest.importorskip("openvino_telemetry")
    sent = []
    monkeypatch.setattr(telemetry.Telemetry, "send_event", lambda self, *args, **kwargs: sent.append(args))
    tensorflow = Extractor(spec, "float32")
    openvino = Extractor(spec, "float32", runtime="openvino")
    assert openvino.runtime == "openvino"
    # The converter sends no usage telemetry from a shop's process (a forked process hung a test run).
    assert sent == []
    assert openvino.fingerprint == tensorflow.fingerprint  # the runtime does not make vectors stale
    assert openvino.dimensions == tensorflow.dimensions
    cosines = (vectors(tensorflow) * vectors(openvino)).sum(axis=1)
    assert cosines.min() > 0.9999, cosines
    # A batch of several images, each its views averaged, as indexing embeds them.
    both = [list(e.embed_many([(i, lambda d=d: d) for i, d in enumerate(photos())])) for e in (tensorflow, openvino)]
    assert all(float(a.vector @ b.vector) > 0.9999 for a, b in zip(*both))


class Recording:
    """Stands for NNCF's telemetry as a shop's process has it (under pytest NNCF turns its own off)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append(name)


def test_int8_is_calibrated_on_the_shops_images_checked_and_cached(spec, int8_cache, caplog, capsys, monkeypatch):
    decorator = pytest.importorskip("nncf.telemetry.decorator")
    telemetry = Recording()
    monkeypatch.setattr(decorator, "telemetry", telemetry)
    calls = []

    def calibration(extractor):
        calls.append(1)
        return calibrate(extractor)

    caplog.set_level(logging.INFO, "visual_search")
    int8 = Extractor(spec, "float32", runtime="openvino-int8", calibration=calibration)
    assert int8.runtime == "openvino-int8" and calls == [1]
    assert "int8 network calibrated on" in caplog.text
    assert telemetry.calls == []  # NNCF's quantisation sent no usage telemetry either
    printed = capsys.readouterr()
    assert "Statistics collection" not in printed.out + printed.err  # NNCF's progress bars stay out of worker logs
    assert not [r for r in caplog.records if r.name.startswith("nncf") and r.levelno < logging.WARNING]
    assert len(list(int8_cache.glob("*.xml"))) == 1 and len(list(int8_cache.glob("*.bin"))) == 1
    reference = vectors(Extractor(spec, "float32"))
    cosines = (vectors(int8) * reference).sum(axis=1)
    assert cosines.min() > openvino_runtime.MIN_COSINE, cosines
    # Another process on this machine reads the saved network: no calibration again.
    again = Extractor(spec, "float32", runtime="openvino-int8", calibration=calibration)
    assert again.runtime == "openvino-int8" and calls == [1]
    assert np.allclose(vectors(again), vectors(int8), atol=1e-5)


def test_int8_without_images_to_calibrate_on_serves_unquantised(spec, int8_cache, caplog):
    extractor = Extractor(spec, "float32", runtime="openvino-int8", calibration=lambda extractor: None)
    assert extractor.runtime == "openvino"
    assert "needs at least" in caplog.text and "found 0" in caplog.text
    assert not list(int8_cache.glob("*"))


def test_int8_that_disagrees_is_not_used(spec, int8_cache, caplog, monkeypatch):
    monkeypatch.setattr(openvino_runtime, "MIN_COSINE", 1.01)  # no quantised network can agree this well
    extractor = Extractor(spec, "float32", runtime="openvino-int8", calibration=calibrate)
    assert extractor.runtime == "openvino"
    assert "agree with the unquantised ones to cosine" in caplog.text
    assert not list(int8_cache.glob("*.xml"))
    tensorflow = Extractor(spec, "float32")
    assert (vectors(extractor) * vectors(tensorflow)).sum(axis=1).min() > 0.9999


@pytest.mark.django_db
def test_the_setting_chooses_the_runtime_and_int8_calibrates_on_registered_images(settings, spec, int8_cache):
    from django.core.files.base import ContentFile

    import visual_search
    from tests.testapp.models import Product
    from visual_search.serving import calibration_inputs, get_extractor

    with visual_search.pause_indexing(reindex_on_exit=False):
        for name, data in zip(PRODUCTS, photos()):
            product = Product(name=name)
            product.image.save(f"{name}.jpg", ContentFile(data), save=True)
        Product.objects.create(name="No photo")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RUNTIME": "openvino"}
    assert get_extractor().runtime == "openvino"
    inputs = calibration_inputs(get_extractor())
    assert inputs.shape == (len(PRODUCTS) * 4, 64, 64, 3)  # every photo's 4 views; the product without one skipped
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RUNTIME": "openvino-int8"}
    assert get_extractor().runtime == "openvino-int8"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RUNTIME": "tensorflow"}
    assert get_extractor().runtime == "tensorflow"


def test_check_says_how_to_install_openvino(settings, monkeypatch):
    import importlib.util

    from visual_search.checks import check_runtime

    assert check_runtime("openvino") == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openvino", "nncf") else real(name, *a))
    [error] = check_runtime("openvino-int8")
    assert error.id == "visual_search.E015"
    assert "openvino and nncf are not installed" in error.msg and "[openvino]" in error.hint
    assert check_runtime("tensorflow") == []
    [error] = check_runtime("onnx")
    assert error.id == "visual_search.E015"
