"""One process serving two shops (django-tenants): each shop's customers see its own products only."""

from __future__ import annotations

from pathlib import Path

import pytest
from django_tenants.utils import schema_context

from tests.conftest import catalogue_image
from tests.tenants.shop.models import Product
from visual_search import find_similar, search_by_image
from visual_search.search import object_vector

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]

BANANA = Path(catalogue_image("Banana")).read_bytes()


def names(results) -> list[str]:
    return [result.object.name for result in results]


def test_a_photo_search_answers_each_shop_from_its_own_catalogue(shops):
    with schema_context("shop_a"):
        in_a = names(search_by_image(BANANA, Product, limit=3))
    with schema_context("shop_b"):
        in_b = names(search_by_image(BANANA, Product, limit=3))
    assert in_a[0] == "shop_a Banana" and set(in_a) <= {f"shop_a {n}" for n in ("Arla-Standard-Milk", "Banana", "Granny-Smith")}
    assert in_b[0] == "shop_b Banana" and set(in_b) <= {f"shop_b {n}" for n in ("Oatly-Oat-Milk", "Red-Delicious", "Banana")}


def test_similar_products_are_ranked_by_each_shops_own_vectors(shops):
    """Another shop's matrix would rank this shop's ids by the other shop's photos."""
    for schema in ("shop_a", "shop_b", "shop_a"):
        with schema_context(schema):
            banana = Product.objects.get(name=f"{schema} Banana")
            others = Product.objects.exclude(pk=banana.pk)
            own = sorted(((float(object_vector(banana) @ object_vector(other)), other.name) for other in others), reverse=True)
            similar = [(round(result.similarity, 4), result.object.name) for result in find_similar(banana, limit=5)]
        assert similar == [(round(score, 4), name) for score, name in own]
