"""The same network run by OpenVINO instead of TensorFlow: ``RUNTIME = "openvino"`` or ``"openvino-int8"``.

An optional extra (``pip install 'django-visual-search[openvino]'``): imported only when a setting asks
for it. The extractor's TensorFlow graph (network and pooling) is converted in memory, so both runtimes
compute the same function of the same weights:

- ``openvino``: float32 or bfloat16 arithmetic as ``PRECISION`` says. Its vectors equal TensorFlow's
  to cosine 0.9999 (tests/test_openvino.py), so they share the fingerprint.
- ``openvino-int8``: the convolutions quantised to 8 bits by NNCF's post-training quantisation,
  calibrated on the shop's own images (``calibration()`` gives their VGG16 inputs). Quantised once per
  machine and model, saved next to the cached version weights, and used only when its vectors agree
  with the unquantised ones on images it was not calibrated on (every cosine >= ``MIN_COSINE``).
  Otherwise, or while the catalogue has too few images to calibrate on, the unquantised OpenVINO
  network serves, with a warning in the log: vectors never change meaning without a new fingerprint.

Nothing here reads the database: the caller passes ``calibration``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..exceptions import WeightsUnavailable

logger = logging.getLogger("visual_search")

# Quantised vectors must agree with the unquantised ones at least this well on every held-out input.
MIN_COSINE = 0.99
# Calibration: at least this many inputs (views of the shop's images), a quarter kept aside to check.
MIN_CALIBRATION = 16
# Operations kept in float: the pooling (and a trained head's normalisation).
NOT_QUANTISED = ("Power", "ReduceMean", "ReduceMax", "Maximum", "Sqrt", "Divide", "NormalizeL2")
CACHE_DIR = os.path.join(tempfile.gettempdir(), "visual_search_openvino")


def openvino():
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise WeightsUnavailable(
            "VISUAL_SEARCH['RUNTIME'] asks for OpenVINO, which is not installed: pip install "
            "'django-visual-search[openvino]', or set VISUAL_SEARCH['RUNTIME'] = 'tensorflow'."
        ) from exc


# OpenVINO's converter and NNCF's quantisation send usage telemetry (openvino-telemetry: a process
# forked to post to Google Analytics) unless the machine's user opted out. From a shop's web or
# worker process that is a network call nobody asked for, and forking a process with threads can
# hang it: a test run stopped there for good. Each package's own stand-in (used where
# openvino-telemetry is missing) takes its place and sends nothing.
TELEMETRY_USERS = ("openvino.tools.ovc.telemetry_utils", "openvino.tools.ovc.convert_impl")
NNCF_TELEMETRY_USER = "nncf.telemetry.decorator"  # tracked_function reads its module's ``telemetry``


def _no_telemetry() -> None:
    try:
        stub = importlib.import_module("openvino.tools.ovc.telemetry_stub")
        for name in TELEMETRY_USERS:
            importlib.import_module(name).tm = stub
    except ImportError:  # another OpenVINO layout: left as it is
        logger.debug("OpenVINO's converter telemetry could not be turned off", exc_info=True)


def _no_nncf_telemetry() -> None:
    try:
        stub = importlib.import_module("nncf.telemetry.wrapper").NNCFTelemetryStub
        importlib.import_module(NNCF_TELEMETRY_USER).telemetry = stub()
    except (ImportError, AttributeError):  # another NNCF layout: left as it is
        logger.debug("NNCF's telemetry could not be turned off", exc_info=True)


@dataclass
class Compiled:
    """A network compiled by OpenVINO: ``forward(batch) -> outputs``, and what it runs."""

    forward: Callable[[np.ndarray], np.ndarray]
    runtime: str  # "openvino" or "openvino-int8": what actually serves (int8 may have fallen back)


def compile_graph(
    graph,
    *,
    key: str,
    precision: str,
    int8: bool = False,
    calibration: Callable[[], np.ndarray | None] | None = None,
) -> Compiled:
    """Convert the ``tf.function`` ``graph`` (one input, one output) and compile it for the CPU.

    ``key`` names the network for the int8 cache (the spec's fingerprint); ``precision`` is
    "float32" or "bfloat16", the arithmetic of what is not quantised.
    """
    ov = openvino()
    _no_telemetry()
    model = ov.convert_model(graph.get_concrete_function())
    core = ov.Core()
    hints = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32", "PERFORMANCE_HINT": "LATENCY"}

    def unquantised():
        return _forward(core.compile_model(model, "CPU", hints))

    if not int8:
        return Compiled(unquantised(), "openvino")
    quantised = _quantised(ov, core, model, key, unquantised, calibration)
    if quantised is None:
        return Compiled(unquantised(), "openvino")
    return Compiled(_forward(core.compile_model(quantised, "CPU", hints)), "openvino-int8")


def _forward(compiled) -> Callable[[np.ndarray], np.ndarray]:
    # One infer request per thread: a request is not thread-safe, and reusing one avoids its setup.
    local = threading.local()

    def forward(batch: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the buffer is reused

    return forward


def cache_path(key: str, version: str) -> str:
    return os.path.join(CACHE_DIR, f"{key}-int8-{version.replace('/', '_')}.xml")


def _quantised(ov, core, model, key: str, unquantised, calibration):
    """The int8 network: read from this machine's cache, else calibrated, checked and saved; None
    when it cannot be calibrated or does not agree with ``unquantised()`` (compiled only to check)."""
    path = cache_path(key, ov.__version__)
    if os.path.isfile(path):
        return core.read_model(path)
    inputs = calibration() if calibration is not None else None
    if inputs is None or len(inputs) < MIN_CALIBRATION:
        logger.warning(
            "Visual search: RUNTIME 'openvino-int8' needs at least %d image views of the catalogue to calibrate "
            "on and found %d; the unquantised OpenVINO network serves until a process starts with more images.",
            MIN_CALIBRATION, 0 if inputs is None else len(inputs),
        )
        return None
    nncf = importlib.import_module("nncf")
    _no_nncf_telemetry()
    held_out = max(4, len(inputs) // 4)
    fit, check = inputs[:-held_out], inputs[-held_out:]
    # Only the convolutions: quantising the pooling's powers and means (GeM) cost cosine 0.94
    # instead of 0.997 on the grocery photos.
    types = {op.get_type_name() for op in model.get_ops()}
    with _quiet():
        quantised = nncf.quantize(
            model,
            nncf.Dataset([fit[i : i + 1] for i in range(len(fit))]),
            subset_size=len(fit),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            ignored_scope=nncf.IgnoredScope(types=sorted(types & set(NOT_QUANTISED))),
        )
    candidate = _forward(core.compile_model(quantised, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
    cosine = _min_cosine(unquantised()(check), candidate(check))
    if cosine < MIN_COSINE:
        logger.warning(
            "Visual search: the int8 network's vectors agree with the unquantised ones to cosine %.4f only (at "
            "least %.2f is required) on %d held-out views; the unquantised OpenVINO network serves.",
            cosine, MIN_COSINE, len(check),
        )
        return None
    _save(ov, quantised, path)
    logger.info("Visual search: int8 network calibrated on %d views, cosine >= %.4f on %d others; saved to %s.",
                len(fit), cosine, len(check), path)
    return quantised


@contextlib.contextmanager
def _quiet():
    """NNCF's INFO lines and progress bars say nothing a shop can act on: our own log line sums it up."""
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=1).min())


def _save(ov, model, path: str) -> None:
    """Write the model's .xml/.bin under a temporary folder, then move them in: no process reads half."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
        staged = os.path.join(folder, os.path.basename(path))
        ov.save_model(model, staged, compress_to_fp16=False)
        # The weights (.bin) first: a process seeing the .xml finds its weights.
        binary = path[: -len(".xml")] + ".bin"
        shutil.move(staged[: -len(".xml")] + ".bin", binary)
        shutil.move(staged, path)
