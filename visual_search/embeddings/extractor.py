"""The embedding model: image bytes in, L2-normalised float32 vectors out, built from an :class:`EmbeddingSpec`.

Nothing here reads the database or decides which model serves: :mod:`visual_search.serving` does,
and keeps one extractor per process and spec. Building one loads TensorFlow and the weights, so it
happens on first use, never at import (a TensorFlow runtime must not cross a Celery prefork fork).
The same class runs the pretrained VGG16 (features pooled here) and a trained version's network
(:mod:`.adapted`, which ends in unit vectors itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..batching import chunked
from ..conf import settings
from ..exceptions import InvalidImage
from . import images, openvino_runtime, runtime, views
from .adapted import build_embedding_model
from .backbone import build_vgg16, resolve_precision
from .pooling import l2_normalise, pool_graph
from .spec import EmbeddingSpec


@dataclass
class Embedded:
    """The outcome for one image of a batch: a vector, or the reason there is none."""

    key: Any
    vector: np.ndarray | None = None
    checksum: str | None = None
    error: Exception | None = None
    # True when ``skip`` said this image needs no work (same bytes as the stored vector).
    skipped: bool = False
    # True when ``known`` gave the vector (computed elsewhere for the same bytes): no network pass.
    known: bool = False


class Extractor:
    """VGG16 convolutional features of one :class:`EmbeddingSpec`, pooled and L2-normalised.

    ``precision`` ("auto", "float32" or "bfloat16") and ``runtime`` ("tensorflow", "openvino" or
    "openvino-int8", see :mod:`.openvino_runtime`) only change speed: they are not part of the spec.
    ``calibration()`` gives the VGG16 inputs of some of the shop's images: only "openvino-int8" asks.
    """

    def __init__(
        self,
        spec: EmbeddingSpec,
        precision: str = "auto",
        runtime: str = "tensorflow",
        calibration: Callable[[], np.ndarray | None] | None = None,
    ):
        self.spec = spec
        self.precision = resolve_precision(precision)
        self.runtime = runtime
        self.fingerprint = spec.fingerprint
        # Seconds one view takes through the network here, as measured by this process's passes (the
        # first, which sets up the runtime's kernels, is not counted); None until then.
        self.view_seconds: float | None = None
        self._passes = 0
        # OpenVINO sets the arithmetic itself: it converts the float32 network.
        self.model = self._build("float32" if runtime != "tensorflow" else self.precision)
        self._forward = self._compile(calibration)

    def _build(self, precision: str):
        spec = self.spec
        if spec.adapted:
            return build_embedding_model(spec.network_config, spec.trained_weights, precision=precision)
        vgg16 = build_vgg16(spec.weights, image_size=spec.image_size, precision=precision, seed=spec.seed)
        return _truncate(vgg16, spec.layer)

    def _compile(self, calibration) -> Callable[[np.ndarray], np.ndarray]:
        """The network and its pooling as one function ``(n, size, size, 3) -> (n, d)`` (not yet unit)."""
        tf = runtime.tensorflow()
        size = self.spec.image_size
        model, spec = self.model, self.spec

        # One traced graph for every batch size: no retracing when the last batch is short. The
        # pooling runs in the graph: a batch's feature maps (200 MB for 128 views) never reach NumPy.
        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
        def graph(batch):
            features = tf.cast(model(batch, training=False), tf.float32)
            if spec.adapted:  # the trained head already pooled and projected
                return features
            return pool_graph(tf, features, spec.pooling, spec.gem_p)

        if self.runtime == "tensorflow":
            # Traced now, while the model loads (one thread, under serving's lock): the first searches
            # of a threaded server (gunicorn's threads; ASGI runs every request in a thread) traced it
            # at once, each, and TensorFlow warned "5 out of the last 5 calls ... triggered
            # tf.function retracing", advice about loops and shapes that had nothing to do with them.
            graph.get_concrete_function()
            return lambda batch: graph(batch).numpy()
        if self.runtime not in ("openvino", "openvino-int8"):
            raise ValueError(f"VISUAL_SEARCH['RUNTIME'] must be 'tensorflow', 'openvino' or 'openvino-int8', not {self.runtime!r}.")
        compiled = openvino_runtime.compile_graph(
            graph, key=self.fingerprint, precision=self.precision, int8=self.runtime == "openvino-int8",
            calibration=(lambda: calibration(self)) if calibration is not None else None,
        )
        self.runtime = compiled.runtime  # what serves: int8 may have fallen back
        return compiled.forward

    @property
    def dimensions(self) -> int:
        return int(self.model.output_shape[-1])

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """``(n, size, size, 3)`` preprocessed inputs -> ``(n, dimensions)`` unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        started = time.perf_counter()
        features = self._forward(np.ascontiguousarray(batch, dtype=np.float32))
        self._timed(time.perf_counter() - started, len(batch))
        return l2_normalise(features)

    def _timed(self, seconds: float, views_done: int) -> None:
        self._passes += 1
        if self._passes > 1:  # a moving average: passes of other threads at once make it slower, not wrong
            each = seconds / views_done
            self.view_seconds = each if self.view_seconds is None else 0.7 * self.view_seconds + 0.3 * each

    def image_seconds(self) -> float:
        """About how long the network takes for one catalogue image (all its views) in this process:
        measured on its own passes, or on a blank image's views when it has run none yet."""
        size = self.spec.image_size
        while self.view_seconds is None:  # twice on a fresh network: its first pass is not counted
            self.embed_arrays(np.zeros((len(self.spec.views), size, size, 3), np.float32))
        return self.view_seconds * len(self.spec.views)

    def prepare(self, data: bytes, seen_as: Sequence[str] | None = None, box: images.Box | None = None) -> np.ndarray:
        """Image file bytes -> the inputs ``(views, size, size, 3)`` of its views (default: the spec's),
        of the region ``box`` only when given."""
        return self._inputs(self._open(data, box), seen_as, box)

    def _open(self, data: bytes, box: images.Box | None = None) -> Image.Image:
        """The image decoded under the shop's limits (``MAX_PIXELS``, ``ALLOWED_FORMATS``), or
        :class:`InvalidImage`; a JPEG at a reduced scale that still leaves the region ``size`` pixels wide."""
        size = self.spec.image_size
        draft = size if box is None else box.draft_size(size)
        return images.open_image(data, max_pixels=int(settings.MAX_PIXELS), allowed_formats=list(settings.ALLOWED_FORMATS), draft_size=draft)

    def _inputs(self, picture: Image.Image, seen_as: Sequence[str] | None, box: images.Box | None) -> np.ndarray:
        if box is not None:
            picture = box.crop(picture)
        return views.render(picture, seen_as or self.spec.views, self.spec.image_size)

    def embed_picture(self, picture: Image.Image, seen_as: Sequence[str] | None = None, box: images.Box | None = None) -> np.ndarray:
        """One decoded RGB photo -> one vector, its views averaged; only its region ``box`` when given."""
        return views.average(self.embed_arrays(self._inputs(picture, seen_as, box)))

    def embed_images(self, pictures: Sequence[Image.Image], seen_as: Sequence[str] | None = None) -> np.ndarray:
        """Decoded RGB images -> ``(n, dimensions)`` vectors, each its views averaged."""
        seen_as = seen_as or self.spec.views
        if not pictures:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        inputs = np.concatenate([views.render(picture, seen_as, self.spec.image_size) for picture in pictures])
        vectors = self.embed_arrays(inputs).reshape(len(pictures), len(seen_as), -1)
        return np.stack([views.average(group) for group in vectors])

    def embed_bytes(self, data: bytes, seen_as: Sequence[str] | None = None, box: images.Box | None = None) -> np.ndarray:
        """One image file's bytes -> one vector, its views averaged; :class:`InvalidImage` for bad input.

        ``seen_as``: the views to average (a query's may differ from the catalogue's; default: the
        spec's). ``box``: embed only that region of the photo (a customer's crop).
        """
        return views.average(self.embed_arrays(self.prepare(data, seen_as, box)))

    def embed_many(
        self,
        items: Iterable[tuple[Any, Callable[[], bytes]]],
        batch_size: int | None = None,
        skip: Callable[[Any, str], bool] | None = None,
        embedding: Callable[[Any, bytes, str], None] | None = None,
        known: Callable[[str], np.ndarray | None] | None = None,
    ) -> Iterator[Embedded]:
        """Embed ``(key, read_bytes)`` pairs in batches, decoding the next batch during inference.

        A bad image yields an :class:`Embedded` with its ``error`` and does not affect the others.
        Errors from ``read_bytes`` other than :class:`InvalidImage` (storage down) propagate as the
        ``error`` too, so the caller decides what is transient. ``skip(key, checksum)`` returning
        True marks an image as unchanged: it is read and hashed, but not decoded or embedded.
        ``embedding(key, data, checksum)`` is called, in the decode thread, with the bytes of each image
        that decoded and their SHA-256 (the indexer makes and names its thumbnail of them: the file is
        neither read nor hashed twice); it must not raise. ``known(checksum)`` may give an image's vector
        computed elsewhere for the same bytes and this network (a file of vectors): the image is then
        decoded (a bad one is refused as always) but does not go through the network.
        """
        batch_size = batch_size or int(settings.BATCH_SIZE)
        chunks = chunked(items, batch_size)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="visual-search-decode") as pool_:
            pending = None
            for chunk in chunks:
                future = pool_.submit(lambda c=chunk: [self._decode(key, read, skip, embedding, known) for key, read in c])
                if pending is not None:
                    yield from self._infer(pending.result())
                pending = future
            if pending is not None:
                yield from self._infer(pending.result())

    def _decode(self, key: Any, read: Callable[[], bytes], skip, embedding=None, known=None) -> tuple[Embedded, np.ndarray | None]:
        outcome = Embedded(key=key)
        inputs = None
        try:
            data = images.read_bytes(read(), int(settings.MAX_INDEX_BYTES))
            outcome.checksum = images.checksum(data)
            if skip is not None and skip(key, outcome.checksum):
                outcome.skipped = True
                return outcome, None
            vector = known(outcome.checksum) if known is not None else None
            if vector is not None and vector.shape == (self.dimensions,):
                self._open(data)  # this shop's limits still apply: decoded, not embedded
                outcome.vector, outcome.known = vector, True
            else:
                inputs = self.prepare(data)
        except images.PASS_THROUGH:
            raise
        except Exception as exc:  # InvalidImage, or a storage error the caller classifies
            outcome.error = exc
            return outcome, None
        if embedding is not None:
            embedding(key, data, outcome.checksum)
        return outcome, inputs

    def _infer(self, decoded: list[tuple[Embedded, np.ndarray | None]]) -> Iterator[Embedded]:
        good = [(outcome, arrays) for outcome, arrays in decoded if arrays is not None]
        if good:
            # Every view of every image of the batch in one forward pass, then averaged per image.
            vectors = self.embed_arrays(np.concatenate([arrays for _, arrays in good]))
            start = 0
            for outcome, arrays in good:
                outcome.vector = views.average(vectors[start : start + len(arrays)])
                start += len(arrays)
        for outcome, _ in decoded:
            yield outcome


def _truncate(vgg16, layer: str):
    """VGG16 up to ``layer`` (the layers after it are never computed)."""
    keras = runtime.keras()
    if layer == vgg16.layers[-1].name:
        return vgg16
    try:
        output = vgg16.get_layer(layer).output
    except ValueError as exc:
        names = ", ".join(each.name for each in vgg16.layers[1:])
        raise ValueError(f"VISUAL_SEARCH['LAYER'] = {layer!r} is not a VGG16 layer; use one of: {names}.") from exc
    return keras.Model(vgg16.input, output, name=f"vgg16_to_{layer}")


__all__ = ["Embedded", "Extractor", "InvalidImage"]
