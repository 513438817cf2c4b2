"""The commands, run for one shop through django-tenants' ``tenant_command``, and the admin, served on
a shop's domain, see that shop only."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from tests.tenants.conftest import add_product
from tests.tenants.test_work import ready, unindexed

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]


@pytest.fixture
def tenant_command():
    """``manage.py tenant_command NAME --schema SCHEMA``; its output."""

    def run(schema: str, *args) -> str:
        out = io.StringIO()
        try:
            call_command("tenant_command", *args, schema_name=schema, stdout=out)
        except SystemExit as exit:  # visual_search_duplicates: 1 when pairs are found
            assert exit.code == 1 and args[0] == "visual_search_duplicates"
        finally:
            connection.set_schema_to_public()  # tenant_command leaves the connection in the shop's schema
        return out.getvalue()

    return run


def status_row(output: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.startswith("shop.product"))


def test_status_counts_the_shops_own_images(shops, tenant_command):
    with schema_context("shop_b"):
        unindexed("shop_b Carrots", "Carrots")
    assert status_row(tenant_command("shop_a", "visual_search_status"))[1:3] == ["3", "3"]  # objects, ready
    assert status_row(tenant_command("shop_b", "visual_search_status"))[1:3] == ["4", "3"]


def test_reindex_indexes_the_shops_own_images(shops, tenant_command):
    with schema_context("shop_b"):
        product = unindexed("shop_b Carrots", "Carrots")
    before = ready("shop_a")
    tenant_command("shop_b", "visual_search_reindex", "--only", "missing")
    assert str(product.pk) in ready("shop_b") and ready("shop_a") == before


@pytest.mark.parametrize("page", ["/admin/visual_search/imageembedding/", "/admin/visual_search/imageembedding/?possible_duplicate=yes",
                                  "/admin/visual_search/modelversion/", "/admin/visual_search/whitening/"])
def test_the_admin_shows_each_shop_its_own_index(shops, page):
    for schema, other in (("shop_a", "shop_b"), ("shop_b", "shop_a")):
        client = Client(HTTP_HOST=f"{schema.replace('_', '-')}.test")
        with schema_context(schema):  # staff and their sessions are each shop's own
            client.force_login(User.objects.create_superuser(f"boss-{schema}", f"boss@{schema}.test", "pw"))
        response = client.get(page)
        assert response.status_code == 200, page
        if page.endswith("imageembedding/"):
            assert f"{schema} Banana" in response.text and other not in response.text


def test_duplicates_are_found_within_a_shop(shops, tenant_command, django_capture_on_commit_callbacks):
    """The same banana photo is in both shops: not a duplicate; twice in one shop, it is."""
    assert "shop_a Banana" not in tenant_command("shop_a", "visual_search_duplicates")
    with schema_context("shop_b"), django_capture_on_commit_callbacks(execute=True):
        add_product("shop_b Banana again", "Banana")
    found = tenant_command("shop_b", "visual_search_duplicates")
    assert "shop_b Banana again" in found and "shop_a" not in found
