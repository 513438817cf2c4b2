"""Two shops on one platform, each in its own PostgreSQL schema, whose catalogues differ: the same
banana photo is product 2 in shop A and product 3 in shop B, and each shop's product 1 is
something else. Made once for the session (creating a schema runs every tenant app's migrations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import connection
from django_tenants.utils import schema_context

from tests.conftest import catalogue_image

CATALOGUES = {
    "shop_a": ["Arla-Standard-Milk", "Banana", "Granny-Smith"],
    "shop_b": ["Oatly-Oat-Milk", "Red-Delicious", "Banana"],
}


def add_product(name: str, photo: str | None = None):
    from tests.tenants.shop.models import Product

    product = Product(name=name)
    product.image.save(f"{photo or name}.jpg", ContentFile(Path(catalogue_image(photo or name)).read_bytes()), save=False)
    product.save()  # indexed in-process on commit (ASYNC False)
    return product


@pytest.fixture(scope="session")
def shops(django_db_setup, django_db_blocker):
    """{schema: {name: product}}: the public tenant and two shops, their catalogues indexed."""
    from tests.tenants.customers.models import Domain, Shop

    made = {}
    with django_db_blocker.unblock():
        public = Shop.objects.create(schema_name="public", name="Platform")
        Domain.objects.create(domain="platform.test", tenant=public, is_primary=True)
        for schema, names in CATALOGUES.items():
            shop = Shop.objects.create(schema_name=schema, name=schema)
            Domain.objects.create(domain=f"{schema.replace('_', '-')}.test", tenant=shop, is_primary=True)
            with schema_context(schema):
                made[schema] = {name: add_product(f"{schema} {name}", name) for name in names}
    return made


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()


@pytest.fixture(autouse=True)
def public_schema():
    """Each test starts in the public schema, as a worker's task or a command does: django-tenants'
    middleware leaves the connection in the last request's shop."""
    connection.set_schema_to_public()
    yield
    connection.set_schema_to_public()
