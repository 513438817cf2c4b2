"""A variant hidden, shown again or moved to another parent: its images follow at the product's save.

Whether a preset image takes part in search (not a hidden variant's:
:meth:`~visual_search.contrib.oscar.registration.VariantImageRegistration.searchable`) and what it
stands for (the parent) are the product's fields, saved on the product, where visual_search's own
handlers (on ``ProductImage``) never look. These handlers remember a loaded product's parent and
``is_public``; after a save that changed them, each of its images goes to the signal processor as a
changed image does (``image_changed``): a variant hidden loses its rows in the same transaction, one
shown again is marked pending and queued once it commits (its photos come back), one moved stands
for its new parent. A ``QuerySet.update()`` sends no signal: the sweep catches up.
"""

from __future__ import annotations

from django.apps import apps
from django.db import router
from django.db.models import signals

from visual_search.registry import models_sharing_rows, registrations_for_model
from visual_search.signals import get_signal_processor

from .registration import IMAGE_MODEL

_SEEN = "_visual_search_oscar_seen"
# The fields of Product that decide whether its images are searched, and for which product.
WATCHED = {"parent", "parent_id", "is_public"}


def _state(product) -> tuple:
    """The product's parent and ``is_public`` as loaded (None for a deferred field)."""
    return product.__dict__.get("parent_id"), product.__dict__.get("is_public")


def remember(sender, instance, **kwargs) -> None:
    instance.__dict__[_SEEN] = _state(instance)


def product_saved(sender, instance, created=False, raw=False, update_fields=None, using=None, **kwargs) -> None:
    """Hand the product's images to the signal processor when its parent or ``is_public`` changed."""
    if raw or (update_fields is not None and not WATCHED & set(update_fields)):
        return
    before, now = instance.__dict__.get(_SEEN), _state(instance)
    instance.__dict__[_SEEN] = now
    processor = get_signal_processor()
    if created or before is None or before == now or processor is None:
        return  # a new product's images are saved after it, each seen on its own
    image_model = apps.get_model(IMAGE_MODEL)
    registrations = registrations_for_model(image_model)
    using = using or router.db_for_write(sender)
    for image in instance.images.all():  # each image's product is this one, as just saved
        for registration in registrations:
            processor.image_changed(registration, image, getattr(image, registration.image_field).name or "", using)


def connect() -> None:
    """Follow the saves of Oscar's Product (and of models sharing its rows); called from ``ready()``."""
    for model in models_sharing_rows(apps.get_model("catalogue", "Product")):
        uid = f"visual_search_oscar:{model._meta.label_lower}"
        signals.post_init.connect(remember, sender=model, dispatch_uid=uid, weak=False)
        signals.post_save.connect(product_saved, sender=model, dispatch_uid=uid, weak=False)
