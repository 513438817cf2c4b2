"""Cheaper and costlier views than the default's four: what each costs in VGG16 work, what it finds.

Issue 17 asks for the table of quality against speed where the two pull apart. Each customer photo
and each catalogue image is seen as the default's four views (``full``, ``flip``, ``crop``,
``crop-flip`` at 224 px): four VGG16 passes. This suite measures what cheaper ways of seeing an
image keep, and what a larger input gains:

- the centre of the ``full`` and ``flip`` maps pooled again (the ``crop`` views' content at no
  extra pass, but not their zoom);
- the crop views at 168 px (their content at the ``full`` view's scale: 56 % of a pass each);
- fewer views;
- the four views at 256 and 288 px (1.31 and 1.65 passes each).

Every image's block-4 map goes through GeM as the product pools it; the vectors are ranked as
:func:`visual_search.ranking.result_scores` ranks them (learned whitening to 128 dimensions, best
image fused with prototype, no query expansion: the default), on the same two protocols as the
quality suite. The cost column is in 224-px passes per image (multiply-adds grow with the pixels);
one pass takes about 35 ms on two cores with bfloat16 (docs/performance.md). Features are computed
once (about 30 minutes on two cores) and cached in results/cache/.
"""

from __future__ import annotations

import hashlib

import numpy as np

from visual_search import ranking
from visual_search.ranking import l2_normalise

from .common import dataset
from .features import CACHE, _gem, images, save_parts
from .levers import protocols

# (key, view, input size, map region pooled): one GeM vector per image each.
CENTRE = slice(3, 25)  # the centre 22 of the 28 x 28 block-4 cells at 224 px: the crop views' 75 %
RENDERS = [
    ("full", "full", 224, None),
    ("flip", "flip", 224, None),
    ("crop", "crop", 224, None),
    ("crop-flip", "crop-flip", 224, None),
    ("full centre", "full", 224, CENTRE),
    ("flip centre", "flip", 224, CENTRE),
    ("crop 168", "crop", 168, None),
    ("crop-flip 168", "crop-flip", 168, None),
    *[(f"{view} {size}", view, size, None) for size in (256, 288) for view in ("full", "flip", "crop", "crop-flip")],
]
DEFAULT = ("full", "flip", "crop", "crop-flip")
CONFIGS = [
    ("four views at 224 px (the default)", DEFAULT),
    ("full only", ("full",)),
    ("full + flip", ("full", "flip")),
    ("full + crop", ("full", "crop")),
    ("full + its centre pooled again", ("full", "full centre")),
    ("full + flip, each + its centre pooled again", ("full", "flip", "full centre", "flip centre")),
    ("full + flip + crop at 168 px", ("full", "flip", "crop 168")),
    ("full + flip + both crops at 168 px", ("full", "flip", "crop 168", "crop-flip 168")),
    ("four views at 256 px", tuple(f"{v} 256" for v in DEFAULT)),
    ("four views at 288 px", tuple(f"{v} 288" for v in DEFAULT)),
]


def _cost(keys) -> float:
    """224-px VGG16 passes per image: each distinct rendered view once (pooling again is free)."""
    sizes = {(view, size) for key, view, size, _ in RENDERS if key in keys}
    return sum((size / 224) ** 2 for _, size in sizes)


def features() -> dict[str, np.ndarray]:
    """``{render key: (images, 512)}`` GeM vectors, computed once and cached."""
    from django.conf import settings

    rows = images()
    weights = settings.VISUAL_SEARCH["WEIGHTS"]
    key = hashlib.sha256(f"{weights}:{RENDERS}:v1".encode()).hexdigest()[:10]
    path = CACHE / f"views-suite-{key}.npz"
    if path.exists():
        cached = dict(np.load(path))
        if all(len(v) == len(rows) for v in cached.values()) and len(cached) == len(RENDERS):
            return cached
    import keras

    from visual_search.embeddings.backbone import build_vgg16
    from visual_search.embeddings.images import open_image
    from visual_search.embeddings.views import centre_crop, render

    out: dict[str, list] = {key: [] for key, *_ in RENDERS}
    allowed = list(settings.VISUAL_SEARCH.get("ALLOWED_FORMATS", ["JPEG", "PNG"]))
    for size in sorted({size for _, _, size, _ in RENDERS}):
        vgg = build_vgg16(weights, image_size=size, precision="auto")
        model = keras.Model(vgg.input, vgg.get_layer("block4_conv3").output)
        mine = [r for r in RENDERS if r[2] == size]
        views = list(dict.fromkeys(view for _, view, _, _ in mine))
        for start in range(0, len(rows), 8):
            chunk = rows[start : start + 8]
            pictures = [open_image((dataset() / r["file"]).read_bytes(), max_pixels=10**8, allowed_formats=allowed) for r in chunk]
            if size < 224:  # only crops here, at the full view's scale: the centre crop seen whole (and mirrored)
                whole = [{"crop": "full", "crop-flip": "flip"}[view] for view in views]
                inputs = np.concatenate([render(centre_crop(p), whole, size) for p in pictures])
            else:
                inputs = np.concatenate([render(p, views, size) for p in pictures])
            maps = np.asarray(model.predict_on_batch(inputs), dtype=np.float32).reshape(len(chunk), len(views), *model.output_shape[1:])
            for key, view, _, region in mine:
                part = maps[:, views.index(view)]
                out[key].append(_gem(part if region is None else part[:, region, region]))
            print(f"\r  {size} px: {min(start + 8, len(rows))}/{len(rows)}", end="", flush=True)
        print()
    return save_parts(path, out)


def measure(vectors: dict, keys, asked, products: np.ndarray, gallery: np.ndarray, queries: np.ndarray) -> tuple[float, float]:
    def seen(names):
        return l2_normalise(np.mean([l2_normalise(vectors[name]) for name in names], axis=0))

    names, codes = np.unique(products[gallery], return_inverse=True)
    policy = ranking.Policy(expansion=0, alpha=3.0, prototype=0.5)
    scores = ranking.result_scores(seen(asked)[queries], seen(keys)[gallery], codes, whitening_dims=128, policy=policy, learned=True)
    right = names[np.argsort(-scores, axis=1)[:, :5]] == products[queries][:, None]
    return round(float(right[:, 0].mean()), 4), round(float(right.any(axis=1).mean()), 4)


# One pass made to look like four: a ridge regression, fitted on the catalogue's own images (no
# labels), from these vectors of an image to its four-view vector. Not in the product: measured
# here to see what distilling the views would give.
MAPPED = [
    ("full, mapped to four views", ("full", "full centre")),
    ("full + flip, mapped to four views", ("full", "flip", "full centre", "flip centre")),
]
RIDGE = 0.01


def mapped(vectors: dict, keys, gallery: np.ndarray) -> np.ndarray:
    """Every image's ``keys`` vectors mapped to its four-view vector, the map fitted on ``gallery``."""
    inputs = np.concatenate([l2_normalise(vectors[key]) for key in keys], axis=1)
    target = l2_normalise(np.mean([l2_normalise(vectors[key]) for key in DEFAULT], axis=0))
    x_mean, y_mean = inputs[gallery].mean(axis=0), target[gallery].mean(axis=0)
    x = inputs - x_mean
    solution = np.linalg.solve(x[gallery].T @ x[gallery] + RIDGE * np.eye(x.shape[1]), x[gallery].T @ (target[gallery] - y_mean))
    return l2_normalise(x @ solution + y_mean)


def run() -> dict:
    dataset()
    rows = images()
    vectors = features()
    products = np.array([r["product"] for r in rows])
    results: dict = {}
    for protocol, (gallery, queries) in protocols(rows).items():
        print(f"\nprotocol {protocol}: {int(gallery.sum())} catalogue images, {int(queries.sum())} queries")
        print(f"  {'views (stored and asked alike)':46s} {'passes':>6s} {'P@1':>6s} {'hit@5':>6s}   asked of the default's stored vectors: P@1, hit@5")
        for name, keys in CONFIGS:
            same = measure(vectors, keys, keys, products, gallery, queries)
            mixed = measure(vectors, DEFAULT, keys, products, gallery, queries) if keys[0] == "full" else None
            results[f"{protocol}: {name}"] = {"passes": round(_cost(keys), 2), "p_at_1": same[0], "hit_at_5": same[1],
                                              "asked_of_default": mixed}
            extra = f"{mixed[0]:6.3f} {mixed[1]:6.3f}" if mixed else ""
            print(f"  {name:46s} {_cost(keys):6.2f} {same[0]:6.3f} {same[1]:6.3f}   {extra}", flush=True)
        for name, keys in MAPPED:
            vectors["mapped"] = mapped(vectors, keys, gallery)
            figures = measure(vectors, DEFAULT, ("mapped",), products, gallery, queries)
            results[f"{protocol}: {name}"] = {"passes": round(_cost(keys), 2), "asked_of_default": figures}
            print(f"  {name:46s} {_cost(keys):6.2f} {'':6s} {'':6s}   {figures[0]:6.3f} {figures[1]:6.3f}", flush=True)
        vectors.pop("mapped", None)
    return results
