"""What customers may see of Oscar's catalogue: name one in ``VISUAL_SEARCH["VISIBILITY"]``.

``browsable`` is Oscar's own rule for its catalogue pages (public, and no child products: a variant
is shown on its parent's page); use it with the preset registration, where a variant's image
already stands for its parent. ``public`` also lets public variants of public parents through, for
a shop that registers ProductImage with ``result="product"`` to show variants as results.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from oscar.core.loading import get_model


def _is_product(model: type[models.Model]) -> bool:
    return issubclass(model, get_model("catalogue", "Product"))


def browsable(model: type[models.Model], request: Any = None) -> models.QuerySet:
    """``Product.objects.browsable()``: public parent and standalone products; other models: all."""
    if _is_product(model):
        return model._default_manager.browsable()
    return model._default_manager.all()


def public(model: type[models.Model], request: Any = None) -> models.QuerySet:
    """Public products, a child only when its parent is public too; other models: all."""
    if _is_product(model):
        return model._default_manager.filter(is_public=True).exclude(parent__is_public=False)
    return model._default_manager.all()
