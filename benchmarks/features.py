"""VGG16 feature maps of every grocery photo, computed once and cached (results/cache/, not committed).

For each image: block 5's map pooled four ways (flatten for the seed, avg, max, GeM) and block 4's
map pooled the same three ways, all before L2 normalisation, so the quality benchmark can compare
pooling, normalisation, whitening and multi-block features without running VGG16 again.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from .common import RESULTS, dataset, photo_rows

CACHE = RESULTS / "cache"


def images() -> list[dict]:
    """Every photo (split train/val) and catalogue image (split catalogue), with product and category."""
    import csv

    rows = [dict(r) for r in photo_rows()]
    with open(dataset() / "products.csv") as handle:
        for row in csv.DictReader(handle):
            rows.append({"file": row["catalogue_image"], "product": row["product"], "category": row["category"], "split": "catalogue"})
    return rows


def _gem(maps: np.ndarray, p: float = 3.0) -> np.ndarray:
    return np.power(np.power(np.maximum(maps, 1e-6), p).mean(axis=(1, 2)), 1.0 / p)


def compute(weights: str, size: int = 224, batch: int = 32) -> dict[str, np.ndarray]:
    from django.conf import settings

    key = hashlib.sha256(f"{weights}:{size}:v1".encode()).hexdigest()[:10]
    path = CACHE / f"features-{key}.npz"
    rows = images()
    if path.exists():
        cached = dict(np.load(path))
        if len(cached["b5_avg"]) == len(rows):
            return cached
    import keras

    from visual_search.embeddings.backbone import build_vgg16
    from visual_search.embeddings.images import prepare

    vgg = build_vgg16(weights, image_size=size, precision="auto")
    model = keras.Model(vgg.input, [vgg.get_layer("block4_conv3").output, vgg.get_layer("block5_pool").output])
    out: dict[str, list] = {k: [] for k in ("b5_flat", "b5_avg", "b5_max", "b5_gem", "b4_avg", "b4_max", "b4_gem")}
    allowed = list(settings.VISUAL_SEARCH.get("ALLOWED_FORMATS", ["JPEG", "PNG"]))
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        x = np.stack([prepare((dataset() / r["file"]).read_bytes(), size=size, max_pixels=10**8, allowed_formats=allowed) for r in chunk])
        b4, b5 = (np.asarray(t, dtype=np.float32) for t in model.predict_on_batch(x))
        out["b5_flat"].append(b5.reshape(len(chunk), -1).astype(np.float16))
        out["b5_avg"].append(b5.mean(axis=(1, 2)))
        out["b5_max"].append(b5.max(axis=(1, 2)))
        out["b5_gem"].append(_gem(b5))
        out["b4_avg"].append(b4.mean(axis=(1, 2)))
        out["b4_max"].append(b4.max(axis=(1, 2)))
        out["b4_gem"].append(_gem(b4))
        print(f"\r  features {min(start + batch, len(rows))}/{len(rows)}", end="", flush=True)
    print()
    return save_parts(path, out)


def save_parts(path, parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Each list of ``parts`` joined into one array, all saved to ``path`` (an .npz cache) and returned."""
    arrays = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def view_vectors(views: tuple[str, ...] = ("full", "flip", "crop", "crop-flip"), batch: int = 8) -> np.ndarray:
    """Unit vectors ``(images, views, d)`` of every image seen as each of ``views``, by the product's own
    extractor (the settings' spec: weights, layer, pooling), cached by the spec's fingerprint."""
    from visual_search.embeddings.spec import EmbeddingSpec
    from visual_search.serving import get_extractor

    # The network's identity, whatever views the settings average (each view is cached apart).
    spec = replace(EmbeddingSpec.from_settings(), views=("full",))
    key = hashlib.sha256(f"{spec.fingerprint}:{','.join(views)}:v1{_runtime()}".encode()).hexdigest()[:10]
    rows = images()

    def compute() -> list[np.ndarray]:
        extractor, out = get_extractor(), []
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            inputs = np.concatenate([extractor.prepare((dataset() / r["file"]).read_bytes(), views) for r in chunk])
            out.append(extractor.embed_arrays(inputs).reshape(len(chunk), len(views), -1))
            print(f"\r  views {min(start + batch, len(rows))}/{len(rows)}", end="", flush=True)
        return out

    return _cached(CACHE / f"views-{key}.npy", compute, len(rows))


def _runtime() -> str:
    """The settings' RUNTIME where it is not TensorFlow: another runtime's vectors are cached apart
    (they share the fingerprint, and agree only to a cosine of 0.99 or better for int8)."""
    from visual_search.conf import settings

    runtime = str(settings.RUNTIME)
    return "" if runtime == "tensorflow" else f":{runtime}"


def customer_vectors(rows_wanted: list[int], per_image: int = 2, seed: int = 0) -> np.ndarray:
    """Vectors ``(len(rows_wanted) * per_image, d)`` of random customer-like views of these images
    (:func:`visual_search.embeddings.augment.customer_view`), seen as a query is (``QUERY_VIEWS``):
    what a shop's whitening and calibration learn from (visual_search.whitening). Cached."""
    import random

    from django.conf import settings

    from visual_search.embeddings.augment import customer_view
    from visual_search.embeddings.images import open_image
    from visual_search.embeddings.spec import EmbeddingSpec
    from visual_search.serving import get_extractor

    spec = EmbeddingSpec.from_settings()
    key = hashlib.sha256(f"{spec.fingerprint}:{rows_wanted}:{per_image}:{seed}:v1{_runtime()}".encode()).hexdigest()[:10]

    def compute() -> list[np.ndarray]:
        rows, rng, extractor = images(), random.Random(seed), get_extractor()
        allowed = list(settings.VISUAL_SEARCH.get("ALLOWED_FORMATS", ["JPEG", "PNG"]))
        out = []
        for n, row in enumerate(rows_wanted):
            picture = open_image((dataset() / rows[row]["file"]).read_bytes(), max_pixels=10**8, allowed_formats=allowed)
            out.append(extractor.embed_images([customer_view(picture, rng)[0] for _ in range(per_image)]))
            print(f"\r  customer views {n + 1}/{len(rows_wanted)}", end="", flush=True)
        return out

    return _cached(CACHE / f"customers-{key}.npy", compute, len(rows_wanted) * per_image)


def _cached(path, compute, count: int) -> np.ndarray:
    """The array saved at ``path`` if it has ``count`` rows, else ``compute()``'s parts joined and saved."""
    if path.exists():
        cached = np.load(path)
        if len(cached) == count:
            return cached
    arrays = np.concatenate(compute()).astype(np.float32)
    print()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, arrays)
    return arrays
