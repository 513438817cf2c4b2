"""The shop's labelled images: every image of every registration that stands for one result model.

A product's main image and its gallery photos all carry the product's id, so "same product" is
known for free; ``TRAINING_CATEGORY_FIELD`` (a lookup on the result model, e.g. ``"category"``)
adds "same kind". Part of the images is held out, per product and with a seed, to measure.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType

from ..conf import settings
from ..indexing import image_reader
from ..logs import counted
from ..registry import Registration, get_registrations, shaping


@dataclass(frozen=True)
class Item:
    """One image: where it is stored, what it shows."""

    registration: Registration
    object_id: str
    product: str
    category: str | None
    read: Callable[[], bytes]

    @property
    def key(self) -> tuple[int, str, str]:
        """(content type id, object id, field name): the ImageEmbedding row of this image."""
        return (ContentType.objects.get_for_model(self.registration.model).pk, self.object_id, self.registration.image_field)


class NotEnoughData(ValueError):
    """Too few products with several images to train or to measure anything."""


def result_registrations(result_model=None) -> list[Registration]:
    """The registrations whose matches stand for ``result_model`` (default: ``API_MODEL`` or the first)."""
    registrations = get_registrations()
    if not registrations:
        raise NotEnoughData("No model is registered with visual search (VISUAL_SEARCH['MODELS']).")
    if result_model is None:
        label = settings.API_MODEL
        result_model = next((r.result_model for r in registrations if r.result_label == str(label).lower()), None) if label else None
        result_model = result_model or registrations[0].result_model
    return [r for r in registrations if r.result_model is result_model]


def shop_items(result_model=None, category_field: str | None = None) -> list[Item]:
    """Every image of ``result_model``'s registrations that may shape a version (:func:`~visual_search.
    registry.shaping`: none of a product customers are not shown), labelled with its product (and category)."""
    category_field = category_field if category_field is not None else settings.TRAINING_CATEGORY_FIELD
    items: list[Item] = []
    for registration in result_registrations(result_model):
        objects = shaping(registration).exclude(**{registration.image_field: ""}).order_by("pk")
        categories: dict[str, str] = {}
        if category_field:
            lookup = f"{registration.result}__{category_field}" if registration.result else category_field
            categories = {str(pk): str(value) for pk, value in objects.values_list("pk", lookup)}
        if registration.result and "__" not in registration.result:
            objects = objects.select_related(registration.result)
        for obj in objects.iterator(chunk_size=1000):
            file = getattr(obj, registration.image_field)
            product = registration.result_pk(obj)
            if not file or product is None:
                continue
            items.append(Item(registration, str(obj.pk), str(product), categories.get(str(obj.pk)), image_reader(obj, registration)))
    return items


def hold_out(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(training, held-out): from each product with 2+ images, about ``fraction`` of them held out.

    A product keeps at least one training image, so every held-out image has its product in the
    gallery it is searched against. Products with a single image are all training.
    """
    by_product: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_product[item.product].append(item)
    rng = random.Random(seed)
    training, held_out = [], []
    for product in sorted(by_product):
        group = by_product[product]
        rng.shuffle(group)
        n = min(len(group) - 1, max(1, round(len(group) * fraction))) if len(group) > 1 and fraction > 0 else 0
        held_out += group[:n]
        training += group[n:]
    products = {item.product for item in training}
    if len(products) < 2:
        raise NotEnoughData(
            # Said after "Training failed: " (the command) and in "its training failed (...)": not "Training" again.
            f"Images of at least 2 products are needed; found {counted(len(products), 'product')}. Upload product images "
            "and run visual_search_reindex first."
        )
    return training, held_out
