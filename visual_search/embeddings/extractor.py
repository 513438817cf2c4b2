"""The per-process embedding model: image bytes in, L2-normalised float32 vectors out.

The model is built on first use, never at import, and once per process: a Celery prefork child
builds its own after the fork (a TensorFlow runtime must not cross a fork), and a web process
builds it on its first search-by-photo request. Which model: the active
:class:`~visual_search.models.ModelVersion` (an :class:`AdaptedExtractor`) or, with none active,
the pretrained VGG16 the settings describe. While a version is being built a worker holds both.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..batching import chunked
from ..conf import settings
from ..exceptions import InvalidImage, WeightsUnavailable
from . import images
from .fingerprint import resolve_layer, settings_fingerprint
from .pooling import l2_normalise, pool

logger = logging.getLogger("visual_search")


@dataclass(frozen=True)
class ExtractorConfig:
    weights: str
    image_size: int
    precision: str
    layer: str
    pooling: str
    gem_p: float
    seed: int

    @classmethod
    def from_settings(cls) -> ExtractorConfig:
        return cls(
            weights=str(settings.WEIGHTS),
            image_size=int(settings.IMAGE_SIZE),
            precision=str(settings.PRECISION),
            layer=resolve_layer(str(settings.LAYER), str(settings.WEIGHTS)),
            pooling=str(settings.POOLING),
            gem_p=float(settings.GEM_P),
            seed=int(settings.RANDOM_SEED),
        )

    @classmethod
    def for_version(cls, config: dict) -> ExtractorConfig:
        """The input side of a trained version's network (``ModelVersion.config``)."""
        return cls(
            weights=str(config["weights"]),
            image_size=int(config["image_size"]),
            precision=str(settings.PRECISION),
            layer="adapted",
            pooling="gem",
            gem_p=float(config.get("gem_p", 3.0)),
            seed=int(config.get("seed", 0)),
        )


@dataclass
class Embedded:
    """The outcome for one image of a batch: a vector, or the reason there is none."""

    key: Any
    vector: np.ndarray | None = None
    checksum: str | None = None
    error: Exception | None = None
    # True when ``skip`` said this image needs no work (same bytes as the stored vector).
    skipped: bool = False


class Extractor:
    """VGG16 convolutional features, pooled and L2-normalised. Build with :func:`get_extractor`."""

    def __init__(self, config: ExtractorConfig):
        from .backbone import resolve_precision

        self.config = config
        self.precision = resolve_precision(config.precision)
        self.fingerprint = settings_fingerprint()
        self.model = self._build()
        self._forward = self._compile()

    def _build(self):
        from .backbone import build_vgg16

        config = self.config
        vgg16 = build_vgg16(config.weights, image_size=config.image_size, precision=config.precision, seed=config.seed)
        return _truncate(vgg16, config.layer)

    def _vectors(self, features: np.ndarray) -> np.ndarray:
        return pool(features, self.config.pooling, self.config.gem_p)

    def _compile(self) -> Callable:
        import tensorflow as tf

        size = self.config.image_size
        model = self.model

        # One traced graph for every batch size: no retracing when the last batch is short.
        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
        def forward(batch):
            return tf.cast(model(batch, training=False), tf.float32)

        return forward

    @property
    def dimensions(self) -> int:
        return int(self.model.output_shape[-1])

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """``(n, size, size, 3)`` preprocessed inputs -> ``(n, dimensions)`` unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        features = self._forward(np.ascontiguousarray(batch, dtype=np.float32)).numpy()
        return self._vectors(features)

    def prepare(self, data: bytes) -> np.ndarray:
        return images.prepare(
            data,
            size=self.config.image_size,
            max_pixels=int(settings.MAX_PIXELS),
            allowed_formats=list(settings.ALLOWED_FORMATS),
        )

    def embed_bytes(self, data: bytes) -> np.ndarray:
        """One image file's bytes -> one vector; raises :class:`InvalidImage` for bad input."""
        return self.embed_arrays(self.prepare(data)[None])[0]

    def embed_many(
        self,
        items: Iterable[tuple[Any, Callable[[], bytes]]],
        batch_size: int | None = None,
        skip: Callable[[Any, str], bool] | None = None,
    ) -> Iterator[Embedded]:
        """Embed ``(key, read_bytes)`` pairs in batches, decoding the next batch during inference.

        A bad image yields an :class:`Embedded` with its ``error`` and does not affect the others.
        Errors from ``read_bytes`` other than :class:`InvalidImage` (storage down) propagate as the
        ``error`` too, so the caller decides what is transient. ``skip(key, checksum)`` returning
        True marks an image as unchanged: it is read and hashed, but not decoded or embedded.
        """
        batch_size = batch_size or int(settings.BATCH_SIZE)
        chunks = chunked(items, batch_size)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="visual-search-decode") as pool_:
            pending = None
            for chunk in chunks:
                future = pool_.submit(lambda c=chunk: [self._decode(key, read, skip) for key, read in c])
                if pending is not None:
                    yield from self._infer(pending.result())
                pending = future
            if pending is not None:
                yield from self._infer(pending.result())

    def _decode(self, key: Any, read: Callable[[], bytes], skip) -> tuple[Embedded, np.ndarray | None]:
        outcome = Embedded(key=key)
        try:
            data = images.read_bytes(read(), int(settings.MAX_INDEX_BYTES))
            outcome.checksum = images.checksum(data)
            if skip is not None and skip(key, outcome.checksum):
                outcome.skipped = True
                return outcome, None
            return outcome, self.prepare(data)
        except Exception as exc:  # InvalidImage, or a storage error the caller classifies
            outcome.error = exc
            return outcome, None

    def _infer(self, decoded: list[tuple[Embedded, np.ndarray | None]]) -> Iterator[Embedded]:
        good = [(outcome, array) for outcome, array in decoded if array is not None]
        if good:
            vectors = self.embed_arrays(np.stack([array for _, array in good]))
            for (outcome, _), vector in zip(good, vectors):
                outcome.vector = vector
        for outcome, _ in decoded:
            yield outcome


def _truncate(vgg16, layer: str):
    """VGG16 up to ``layer`` (the layers after it are never computed)."""
    import keras

    if layer == vgg16.layers[-1].name:
        return vgg16
    try:
        output = vgg16.get_layer(layer).output
    except ValueError as exc:
        names = ", ".join(l.name for l in vgg16.layers[1:])
        raise ValueError(f"VISUAL_SEARCH['LAYER'] = {layer!r} is not a VGG16 layer; use one of: {names}.") from exc
    return keras.Model(vgg16.input, output, name=f"vgg16_to_{layer}")


class AdaptedExtractor(Extractor):
    """A trained :class:`~visual_search.models.ModelVersion`: VGG16 blocks 1-4, its block 5 and head.

    Same preprocessing and batching as the pretrained extractor; the network already ends in
    unit vectors (see :mod:`visual_search.training.network`), and the fingerprint is the version's.
    """

    def __init__(self, config: ExtractorConfig, version):
        self.version_config = dict(version.config)
        self.weights_path = local_weights(version)
        super().__init__(config)
        self.fingerprint = version.fingerprint
        self.version_id = version.pk

    def _build(self):
        from ..training.network import build_embedding_model

        return build_embedding_model(self.version_config, self.weights_path, precision=self.config.precision)

    def _vectors(self, features: np.ndarray) -> np.ndarray:
        return l2_normalise(features.astype(np.float32))


def local_weights_path(fingerprint: str) -> str:
    """Where this machine caches the weights of the version with ``fingerprint``."""
    return os.path.join(tempfile.gettempdir(), "visual_search_weights", f"{fingerprint}.weights.h5")


def local_weights(version) -> str:
    """A local copy of ``version.weights_file`` (a name in Django's default storage), fetched once.

    Keras reads weights from a path, and the storage may be S3: every web process and worker copies
    the file to a cache folder named by the version's fingerprint (which covers the weights' bytes,
    so a copy never needs checking again), writing to a temporary name first so that processes
    fetching it at the same time never read half a file.
    """
    from django.core.files.storage import default_storage

    path = local_weights_path(version.fingerprint)
    folder = os.path.dirname(path)
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    try:
        source = default_storage.open(version.weights_file, "rb")
    except FileNotFoundError as exc:
        raise WeightsUnavailable(
            f"The weights of model version {version.label!r} ({version.weights_file!r}) are missing from the "
            "default storage; roll back (`manage.py visual_search_versions rollback`) or train it again."
        ) from exc
    with source, tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as target:
        shutil.copyfileobj(source, target)
    os.replace(target.name, path)
    return path


_lock = threading.Lock()
# A few models per process: the active one, and one being built while a switch is in progress.
_cache: dict[tuple, Extractor] = {}
MAX_MODELS = 3


def get_extractor(version=None) -> Extractor:
    """The process-wide :class:`Extractor` of a model version, built on first call.

    ``version``: a :class:`~visual_search.models.ModelVersion`, a fingerprint (the settings' one,
    or a version's), or None for the version searches use now (the active one, else the
    pretrained model of the settings).
    """
    from ..versions import serving_version

    if version is None:
        version = serving_version()
    elif isinstance(version, str):
        version = _version_of(version)
    if version is None:
        config = ExtractorConfig.from_settings()
        key, make = (os.getpid(), "settings", config), lambda: Extractor(config)
    else:
        config = ExtractorConfig.for_version(version.config)
        key, make = (os.getpid(), version.fingerprint, config), lambda: AdaptedExtractor(config, version)
    extractor = _cache.get(key)
    if extractor is None:
        with _lock:
            extractor = _cache.get(key)
            if extractor is None:
                logger.info("Loading %s (%s weights, %s) in process %s", key[1], config.weights, config.precision, os.getpid())
                for old in [k for k in _cache if k[0] != key[0] or (k[1] == key[1] == "settings")]:
                    del _cache[old]  # another process's (forked) or the settings changed
                while len(_cache) >= MAX_MODELS:
                    del _cache[next(iter(_cache))]
                extractor = _cache[key] = make()
    return extractor


def _version_of(fingerprint: str):
    """The version whose vectors have ``fingerprint``; None for the pretrained model's."""
    from ..models import ModelVersion

    if fingerprint == settings_fingerprint():
        return None
    version = ModelVersion.objects.filter(fingerprint=fingerprint).exclude(weights_file="").first()
    if version is None:
        raise LookupError(f"No model version has fingerprint {fingerprint!r}, and it is not the settings' one.")
    return version


def embed_image(source: bytes | Any, extractor: Extractor | None = None) -> np.ndarray:
    """Embed one uploaded image (bytes or a file object), enforcing ``MAX_UPLOAD_BYTES`` first.

    With the active version's extractor unless ``extractor`` is given: a search passes the one it
    then compares with, so query and catalogue vectors come from the same version.
    """
    data = images.read_bytes(source, int(settings.MAX_UPLOAD_BYTES))
    return (extractor or get_extractor()).embed_bytes(data)


__all__ = ["AdaptedExtractor", "Embedded", "Extractor", "InvalidImage", "embed_image", "get_extractor"]
