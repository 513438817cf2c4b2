"""A shop whose staff use their own AdminSite: the package's pages and the product admin's buttons
work there, under that site's URLs."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import path

import visual_search.admin
from tests.conftest import catalogue_image
from tests.testapp.models import Product
from visual_search.admin_mixins import VisualSearchAdminMixin
from visual_search.models import ImageEmbedding, ModelVersion, Whitening

staff_site = admin.AdminSite(name="staff")


class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["name"]


staff_site.register(Product, ProductAdmin)
visual_search.admin.register_on(staff_site)
visual_search.admin.register_on(staff_site)  # twice: nothing registered twice

urlpatterns = [path("staff/", staff_site.urls)]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_the_package_pages_and_buttons_work_on_the_shop_s_own_admin_site(staff, make_product):
    product = make_product("Banana", catalogue_image("Banana"))
    assert all(staff_site.is_registered(model) for model in (ImageEmbedding, Whitening, ModelVersion))
    for url in ("/staff/", "/staff/testapp/product/", f"/staff/testapp/product/{product.pk}/change/",
                "/staff/visual_search/imageembedding/", "/staff/visual_search/whitening/", "/staff/visual_search/modelversion/"):
        assert staff.get(url).status_code == 200, url
    # The buttons post to this site's URLs and come back to its pages.
    page = staff.get("/staff/testapp/product/").content.decode()
    [requeue] = re.findall(r'<form method="post" action="([^"]+)" class="vs-inline-form"', page)
    assert requeue.startswith("/staff/testapp/product/")
    assert staff.post(requeue, follow=True).redirect_chain == [("/staff/testapp/product/", 302)]
    response = staff.post("/staff/testapp/product/", {"action": "visual_search_reindex", "_selected_action": [product.pk]}, follow=True)
    assert response.redirect_chain == [("/staff/testapp/product/", 302)] and "1 image indexed" in response.content.decode()
    assert staff.post("/staff/visual_search/modelversion/rollback/", follow=True).redirect_chain == [("/staff/visual_search/modelversion/", 302)]


def test_the_learned_whitening_is_read_only_for_staff(staff, make_product):
    """Documented read-only, it offered "Delete selected" and an editable page: a deleted one left
    the scores on the default curve until the next fit."""
    make_product("Banana", catalogue_image("Banana"))
    Whitening.objects.create(result_type=ImageEmbedding.objects.get().result_type, fingerprint="f", dimensions=2,
                             trained_on=3, mean=b"", projection=b"")
    page = staff.get("/staff/visual_search/whitening/").content.decode()
    assert "delete_selected" not in page and 'name="action"' not in page
    whitening = Whitening.objects.get()
    assert staff.get(f"/staff/visual_search/whitening/{whitening.pk}/delete/").status_code == 403
    assert staff.post(f"/staff/visual_search/whitening/{whitening.pk}/change/", {}).status_code == 403
    assert staff.get(f"/staff/visual_search/whitening/{whitening.pk}/change/").status_code == 200  # still viewable
