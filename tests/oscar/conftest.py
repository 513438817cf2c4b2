"""A small Oscar catalogue of real grocery photos: products with prices and stock, a hidden one, a
parent with a variant that has its own photo."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from oscar.core.loading import get_model

from tests.conftest import catalogue_image

Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
ProductImage = get_model("catalogue", "ProductImage")
Partner = get_model("partner", "Partner")
StockRecord = get_model("partner", "StockRecord")

STANDALONE = {"Arla-Standard-Milk": "12.90", "Granny-Smith": "3.50", "Banana": "2.25", "Oatly-Oat-Milk": "18.00"}
HIDDEN = "Oatly-Oat-Milk"
PARENT, VARIANT = "Yoghurt", "Arla-Mild-Vanilla-Yoghurt"  # the variant's photo is not on the parent


def add_image(product, name: str) -> None:
    image = ProductImage(product=product)
    image.original.save(f"{name}.jpg", ContentFile(Path(catalogue_image(name)).read_bytes()), save=False)
    image.save()


@pytest.fixture
def catalogue(db, settings):
    """{name: product}; images indexed in-process (no broker), as a shop without Celery does."""
    cache.clear()  # throttling counts and thumbnails of an earlier test
    kind = ProductClass.objects.create(name="Groceries", requires_shipping=False, track_stock=True)
    partner = Partner.objects.create(name="Shop")
    made = {}
    for name, price in STANDALONE.items():
        product = Product.objects.create(title=name.replace("-", " "), product_class=kind, is_public=name != HIDDEN)
        StockRecord.objects.create(product=product, partner=partner, partner_sku=name, price=Decimal(price), num_in_stock=10)
        add_image(product, name)
        made[name] = product
    parent = Product.objects.create(title=PARENT, product_class=kind, structure=Product.PARENT)
    add_image(parent, "Arla-Natural-Yoghurt")
    child = Product.objects.create(title="Vanilla", parent=parent, structure=Product.CHILD)
    StockRecord.objects.create(product=child, partner=partner, partner_sku=VARIANT, price=Decimal("9.95"), num_in_stock=5)
    add_image(child, VARIANT)
    made[PARENT], made[VARIANT] = parent, child
    return made
