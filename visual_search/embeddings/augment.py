"""Augmentations that make a clean product image look like a customer's photo of it.

Customers photograph a product on a shelf or in a hand: off-centre, closer or farther, tilted, under
other light. Each augmented view is a random crop and zoom, a small rotation, a mirror image and
a change of brightness, contrast and colour, then the same fit-and-pad as every indexed image
(:func:`visual_search.embeddings.images.fit_and_pad`), padded with a random background colour
instead of the neutral one.

Training learns from them (:mod:`visual_search.training`); a shop with few images also fits its
whitening and its score calibration on them (:mod:`visual_search.whitening`).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .images import MEAN_RGB, fit_and_pad


def augment(image: Image.Image, size: int, rng: random.Random) -> np.ndarray:
    """One random view of an RGB ``image``, as the ``(size, size, 3)`` input VGG16 expects."""
    image, background = customer_view(image, rng)
    return fit_and_pad(image, size, background=background)


def customer_view(image: Image.Image, rng: random.Random) -> tuple[Image.Image, tuple[int, int, int]]:
    """One random customer-like view of an RGB ``image``, and the colour its empty corners got."""
    width, height = image.size
    # Crop 45-100 % of the area with aspect 3:4 to 4:3, anywhere in the image.
    for _ in range(10):
        area = width * height * rng.uniform(0.45, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            image = image.crop((left, top, left + w, top + h))
            break
    background = tuple(int(c) for c in np.clip(np.array(MEAN_RGB) + [rng.gauss(0, 40) for _ in range(3)], 0, 255))
    image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=background)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    return image, background
