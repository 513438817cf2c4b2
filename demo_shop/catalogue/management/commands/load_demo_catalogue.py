"""manage.py load_demo_catalogue: the 81 products of the Grocery Store Dataset, with galleries.

Reads demo_shop/data/grocery_store/products.csv and photos.csv. Each product gets its catalogue
image and its 4 ``train`` shop photos as gallery images; the ``val`` photos are never loaded (the
tests use them as customer photos the shop has never seen). Idempotent: files get fixed names and
are only written when missing or different, rows only saved when a field differs, and indexing
only touches images without a current embedding, so a second run changes nothing.

The images' vectors, whitening and score calibration ship in demo_shop/data/vectors.json.xz
(``visual_search_reindex --vectors``: taken for images of the same bytes and model version, so the
first run takes seconds, not the 12 minutes of computing them on two cores of an AMD EPYC without
AVX-512). ``--compute`` computes them here; other settings (ImageNet weights, another image size)
compute them anyway.
"""

from __future__ import annotations

import csv
import hashlib
from decimal import Decimal
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

import visual_search

from ...models import Category, Product, ProductImage

DATA = Path(__file__).resolve().parents[3] / "data" / "grocery_store"
# Made by `manage.py dumpdata visual_search.ImageEmbedding visual_search.Whitening --natural-foreign
# --natural-primary -o demo_shop/data/vectors.json.xz` after a `--compute` load (demo_shop/README.md).
VECTORS = DATA.parent / "vectors.json.xz"


def display_name(dataset_name: str) -> str:
    """``"Arla-Standard-Milk"`` -> ``"Arla Standard Milk"``."""
    return dataset_name.replace("-", " ")


def demo_price(product: str) -> Decimal:
    """A plausible, stable price in kronor: 9.90 to 49.90, from a hash of the name."""
    step = int(hashlib.sha256(product.encode()).hexdigest()[:8], 16) % 41
    return Decimal(990 + step * 100) / 100


def store_file(storage: Storage, name: str, source: Path) -> str:
    """Put ``source`` at ``name`` unless the same bytes are already there; returns the name."""
    data = source.read_bytes()
    if storage.exists(name):
        with storage.open(name, "rb") as handle:
            if handle.read() == data:
                return name
        storage.delete(name)
    return storage.save(name, ContentFile(data))


def update(obj, **values) -> bool:
    """Set ``values`` on ``obj`` and save it only when something differs (no needless writes)."""
    changed = [field for field, value in values.items() if getattr(obj, field) != value]
    for field in changed:
        setattr(obj, field, values[field])
    if obj.pk is None or changed:
        obj.save()
        return True
    return False


class Command(BaseCommand):
    help = "Load the demo grocery catalogue (81 products, galleries) and compute its visual search embeddings."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=str(DATA), help="Folder with products.csv and photos.csv.")
        parser.add_argument("--no-index", action="store_true", help="Load only; run manage.py visual_search_reindex later.")
        parser.add_argument(
            "--compute", action="store_true",
            help=f"Compute the vectors of the images not indexed yet here (all of them on a new database: 12 minutes on two "
            f"slow cores) instead of taking those shipped in {VECTORS.name}. To recompute an indexed catalogue: "
            "manage.py visual_search_reindex --force.",
        )

    def handle(self, *args, data, no_index=False, compute=False, verbosity=1, **options):
        folder = Path(data)
        if not (folder / "products.csv").is_file():
            raise CommandError(f"No products.csv in {folder}.")
        with visual_search.pause_indexing(reindex_on_exit=False), transaction.atomic():
            counts = self.load(folder)
        self.stdout.write(
            f"Catalogue: {counts['products']} products ({counts['changed']} added or changed), "
            f"{counts['gallery']} gallery images ({counts['gallery_added']} added)."
        )
        if not no_index:
            shipped = [] if compute or not VECTORS.is_file() else ["--vectors", str(VECTORS)]
            call_command(
                "visual_search_reindex", "--only", "missing,stale,failed,pending", *shipped,
                verbosity=verbosity, stdout=self.stdout, stderr=self.stderr,
            )

    def load(self, folder: Path) -> dict[str, int]:
        gallery = self.train_photos(folder)
        counts = {"products": 0, "changed": 0, "gallery": 0, "gallery_added": 0}
        with open(folder / "products.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                product, changed = self.load_product(folder, row)
                counts["products"] += 1
                counts["changed"] += changed
                for index, path in enumerate(gallery.get(row["product"], []), start=1):
                    counts["gallery"] += 1
                    counts["gallery_added"] += self.load_photo(product, index, path)
        return counts

    def train_photos(self, folder: Path) -> dict[str, list[Path]]:
        photos: dict[str, list[Path]] = {}
        with open(folder / "photos.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["split"] == "train":  # never "val": those are the tests' unseen customer photos
                    photos.setdefault(row["product"], []).append(folder / row["file"])
        return {name: sorted(paths) for name, paths in photos.items()}

    def load_product(self, folder: Path, row: dict[str, str]) -> tuple[Product, bool]:
        category, _ = Category.objects.get_or_create(slug=slugify(row["category"]), defaults={"name": display_name(row["category"])})
        slug = slugify(row["product"])
        product = Product.objects.filter(slug=slug).first() or Product(slug=slug)
        storage = Product._meta.get_field("image").storage
        image = store_file(storage, f"products/{slug}.jpg", folder / row["catalogue_image"])
        changed = update(
            product,
            name=display_name(row["product"]),
            category_id=category.pk,
            description=row["description"],
            price=demo_price(row["product"]),
            image=image,
        )
        return product, changed

    def load_photo(self, product: Product, index: int, path: Path) -> bool:
        storage = ProductImage._meta.get_field("image").storage
        name = store_file(storage, f"gallery/{product.slug}-{index}.jpg", path)
        if product.images.filter(image=name).exists():
            return False
        ProductImage.objects.create(product=product, image=name)
        return True
