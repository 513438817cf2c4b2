"""Oscar's product images, registered as Oscar shows them: a variant's photo stands for its parent.

In Oscar a *child* product (a size or colour of a *parent*) is never listed on its own: the
parent's page shows and sells the variants, and ``Product.objects.browsable()`` leaves children
out. So a match on a child's image returns the parent, once, scored by the best of the family's
images; a standalone or parent product's image returns that product. A child the shop hides (not
public) takes no part in search: its images are not indexed until it is public again
(:mod:`visual_search.contrib.oscar.signals` follows the product's saves). A shop that wants variants as
results registers ``catalogue.ProductImage`` itself (``result="product"``, docs/oscar.md), and this
preset steps aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models

from visual_search import registry
from visual_search.registry import Registration

IMAGE_MODEL = "catalogue.ProductImage"
IMAGE_FIELD = "original"


class Canonical(models.Transform):
    """``product__id__canonical``: the parent's id for a child product, else the product's own id.

    The SQL twin of :meth:`VariantImageRegistration.result_pk`, so that what visual_search queries
    (a product's gallery, the images to requeue, those a new model version still lacks) agrees with
    what it stored. Registered on the ``id`` field of Oscar's Product model only.
    """

    lookup_name = "canonical"

    def as_sql(self, compiler, connection):
        product_id, params = compiler.compile(self.lhs)
        product = apps.get_model("catalogue", "Product")  # lhs may be ProductImage.product_id (a trimmed join)
        quote = connection.ops.quote_name  # table and column names, never aliases
        table, pk = quote(product._meta.db_table), quote(product._meta.pk.column)
        parent = quote(product._meta.get_field("parent").column)
        sql = f"COALESCE((SELECT vs_p.{parent} FROM {table} vs_p WHERE vs_p.{pk} = {product_id}), {product_id})"
        return sql, params


@dataclass(frozen=True)
class VariantImageRegistration(Registration):
    """``ProductImage.original`` whose matches stand for the browsable product: a child's parent."""

    def result_pk(self, obj: models.Model) -> Any:
        product = obj.product
        return product.parent_id or product.pk

    def result_pk_lookup(self) -> str:
        return "product__id__canonical"

    def of_results(self, pks: list[Any]) -> models.QuerySet:
        # A variant in Django's admin stands for its own photos (they are found as its parent).
        return self.model._default_manager.filter(models.Q(product__id__canonical__in=pks) | models.Q(product__in=pks))

    def searchable(self) -> models.QuerySet:
        # A variant the shop hides (not public: an unreleased flavour) plays no part in search until
        # it is public again: its photo finds nothing, and its parent's look-alikes leave it out.
        # A hidden standalone or parent product stays indexed: VISIBILITY hides it at every search.
        return self.model._default_manager.exclude(product__parent__isnull=False, product__is_public=False)

    def is_searchable(self, obj: models.Model) -> bool:
        product = obj.product
        return product.parent_id is None or product.is_public

    def shown_on(self, obj: models.Model) -> models.Model | None:
        # Oscar shows a child on its parent's page (and redirects its URL there): a shop's code, or a
        # customer who reached the variant, asks for its look-alikes by its id.
        if getattr(obj, "parent_id", None) is None:
            return None
        return obj.parent

    def why_hidden(self, obj: models.Model) -> str:
        # A hidden variant (an unreleased flavour) is on no page customers see, whatever VISIBILITY says
        # of its parent: the API answers 404 for its id, as for an unknown one.
        if getattr(obj, "parent_id", None) is not None and not obj.is_public:
            return "it is a variant that is not public (is_public=False)."
        return ""

    def pictures(self) -> models.QuerySet:
        # Nor does its photo show on the parent's card: Oscar's own pages never show it.
        return self.model._default_manager.exclude(product__is_public=False)


def shop_registered_its_own() -> bool:
    """Whether settings or code already register an image field of Oscar's ProductImage."""
    label = apps.get_model(IMAGE_MODEL)._meta.label_lower
    return any(r.label == label for r in registry.get_registrations())


def register_product_images() -> Registration | None:
    """Register ``catalogue.ProductImage.original`` (variants count for their parent), unless the shop
    registered ProductImage itself; returns the registration, or None when it stepped aside.

    A shop app listed after this one that calls ``visual_search.register(ProductImage, "original",
    ...)`` replaces it, as any later registration of the same field does.
    """
    if shop_registered_its_own():
        return None
    model = apps.get_model(IMAGE_MODEL)
    model._meta.get_field("product").related_model._meta.pk.register_lookup(Canonical)
    return registry.register(model, image_field=IMAGE_FIELD, result="product", registration_class=VariantImageRegistration)
