"""Visual search on Oscar's ``ProductAdmin`` in Django's admin, status column second.

Oscar registers its own ProductAdmin; to add the mixin it must be unregistered and registered again,
from an admin module that runs after Oscar's (your shop app's, listed after Oscar's apps)::

    # yourshop/admin.py
    from visual_search.contrib.oscar.admin import add_visual_search_to_product_admin

    add_visual_search_to_product_admin()

This module changes nothing by being imported (Django's admin autodiscovery imports it).
"""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.db import models
from django.db.models.functions import Cast

from visual_search.admin_mixins import VisualSearchAdminMixin, embedding_rows
from visual_search.models import ImageEmbedding, content_types_of, type_is

STATUS_COLUMN = "visual_search_status"


def product_rows(product: type[models.Model]) -> models.QuerySet:
    """The rows a product's status shows: its family's (a parent's gallery holds its variants'
    photos), and a variant's own photos, which are stored as its parent's."""
    image = apps.get_model("catalogue", "ProductImage")
    own_images = image._default_manager.filter(product=models.OuterRef(models.OuterRef("pk")))
    own_rows = ImageEmbedding.objects.filter(
        type_is("content_type", content_types_of(image)),
        object_id__in=own_images.values(text=Cast("pk", output_field=models.CharField())),
    )
    return embedding_rows(product) | own_rows


def product_admin_class(base: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``base`` with :class:`VisualSearchAdminMixin`, its status column right after the first column
    (Oscar's list is wide: at the end it is cut off on most screens)."""

    class VisualSearchProductAdmin(VisualSearchAdminMixin, base):
        def visual_search_rows(self):
            return product_rows(self.model)

        def get_list_display(self, request):
            columns = [c for c in super().get_list_display(request) if c != STATUS_COLUMN]
            return [*columns[:1], STATUS_COLUMN, *columns[1:]]

    VisualSearchProductAdmin.__name__ = VisualSearchProductAdmin.__qualname__ = f"VisualSearch{base.__name__}"
    return VisualSearchProductAdmin


def add_visual_search_to_product_admin(site: admin.AdminSite = admin.site) -> type[admin.ModelAdmin]:
    """Register Oscar's Product again on ``site`` with its current admin class plus visual search."""
    product = apps.get_model("catalogue", "Product")
    current = type(site._registry[product])  # AdminSite.get_model_admin() exists from Django 5.0 only
    if issubclass(current, VisualSearchAdminMixin):
        return current
    site.unregister(product)
    site.register(product, product_admin_class(current))
    return type(site._registry[product])
