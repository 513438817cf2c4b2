"""Test-time views: the same photo seen a few ways, embedded in one batch and averaged into one vector.

A customer's photo is mirrored, off-centre and cluttered where the catalogue image is not; a VGG16
feature is neither mirror- nor crop-invariant. Averaging the unit vectors of a few views of each
image makes the vector depend less on those accidents (measured by ``python -m benchmarks quality``,
see docs/performance.md). Each view costs one more forward pass.

- ``full``: the whole image (what a vector was before views existed);
- ``flip``: the whole image mirrored left to right;
- ``crop``: the centre ``CROP`` of the image, enlarged: the product usually sits in the middle;
- ``crop-flip``: that crop mirrored.

The views of stored images are part of the fingerprint (:class:`~.spec.EmbeddingSpec`); a query may
use other views than the catalogue (``QUERY_VIEWS``): the vectors stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..conf import SPEC
from .images import fit_and_pad

VIEWS = SPEC["VIEWS"].item_choices  # the names the settings accept are the views rendered here
# The share of each side the "crop" views keep, centred.
CROP = 0.75


def render(image: Image.Image, views: Sequence[str], size: int) -> np.ndarray:
    """The VGG16 inputs ``(len(views), size, size, 3)`` of ``image`` seen as each of ``views``."""
    unknown = set(views) - set(VIEWS)
    if unknown or not views:
        raise ValueError(f"Views must be some of {', '.join(VIEWS)}, not {list(views)!r}.")
    whole = fit_and_pad(image, size) if {"full", "flip"} & set(views) else None
    crop = fit_and_pad(centre_crop(image), size) if {"crop", "crop-flip"} & set(views) else None
    rendered = {"full": whole, "flip": _mirror(whole), "crop": crop, "crop-flip": _mirror(crop)}
    return np.stack([rendered[view] for view in views])


def centre_crop(image: Image.Image, share: float = CROP) -> Image.Image:
    """The centre of ``image``, ``share`` of each side."""
    width, height = image.size
    keep_w, keep_h = max(1, round(width * share)), max(1, round(height * share))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


def _mirror(array: np.ndarray | None) -> np.ndarray | None:
    # The padded input is centred, so mirroring it mirrors the image (to within a pixel of padding).
    return None if array is None else np.ascontiguousarray(array[:, ::-1])


def average(vectors: np.ndarray) -> np.ndarray:
    """One unit vector from the unit vectors of an image's views ``(views, d)``."""
    mean = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
