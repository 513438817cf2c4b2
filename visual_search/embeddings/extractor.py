"""The per-process embedding model: image bytes in, L2-normalised float32 vectors out.

The model is built on first use, never at import, and once per process: a Celery prefork child
builds its own after the fork (a TensorFlow runtime must not cross a fork), and a web process
builds it on its first search-by-photo request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..batching import chunked
from ..conf import settings
from ..exceptions import InvalidImage
from . import images
from .fingerprint import current_fingerprint, resolve_layer
from .pooling import pool

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
        from .backbone import build_vgg16, resolve_precision

        self.config = config
        self.precision = resolve_precision(config.precision)
        self.fingerprint = current_fingerprint()
        vgg16 = build_vgg16(config.weights, image_size=config.image_size, precision=config.precision, seed=config.seed)
        self.model = _truncate(vgg16, config.layer)
        self._forward = self._compile()

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
        """``(n, size, size, 3)`` preprocessed inputs -> ``(n, 512)`` unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        features = self._forward(np.ascontiguousarray(batch, dtype=np.float32)).numpy()
        return pool(features, self.config.pooling, self.config.gem_p)

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


_lock = threading.Lock()
_cache: dict[tuple[int, ExtractorConfig], Extractor] = {}


def get_extractor() -> Extractor:
    """The process-wide :class:`Extractor` for the current settings, built on first call."""
    config = ExtractorConfig.from_settings()
    key = (os.getpid(), config)
    extractor = _cache.get(key)
    if extractor is None:
        with _lock:
            extractor = _cache.get(key)
            if extractor is None:
                logger.info("Loading VGG16 (%s weights, %s) in process %s", config.weights, config.precision, os.getpid())
                _cache.clear()
                extractor = _cache[key] = Extractor(config)
    return extractor


def embed_image(source: bytes | Any) -> np.ndarray:
    """Embed one uploaded image (bytes or a file object), enforcing ``MAX_UPLOAD_BYTES`` first."""
    data = images.read_bytes(source, int(settings.MAX_UPLOAD_BYTES))
    return get_extractor().embed_bytes(data)


__all__ = ["Embedded", "Extractor", "InvalidImage", "embed_image", "get_extractor"]
