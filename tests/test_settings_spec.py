"""The settings spec: one table of keys from which the checks and docs/settings.md are made."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from visual_search import checks as visual_search_checks
from visual_search.checks import DEEP_CHECKS, check_for, deep_check
from visual_search.conf import CHECK_IDS, DEFAULTS, KINDS, PROJECT_IDS, SPEC, render_reference
from visual_search.conf import settings as visual_search_settings
from visual_search.embeddings.pooling import POOLINGS
from visual_search.training.trainer import TrainingOptions

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "settings.md"
REGENERATE = "python -m visual_search.conf > docs/settings.md"

# The keys and defaults of 0.1, which projects rely on: renaming one or changing a default is a
# breaking change, not a refactoring.
RELEASED_DEFAULTS = {
    "MODELS": [],
    "WEIGHTS": "imagenet",
    "RANDOM_SEED": 0,
    "IMAGE_SIZE": 224,
    "LAYER": "auto",
    "POOLING": "gem",
    "GEM_P": 3.0,
    "PRECISION": "auto",
    "WHITENING": "pca",
    "WHITENING_DIMS": 128,
    "QUERY_EXPANSION": 3,
    "QUERY_EXPANSION_ALPHA": 3.0,
    "WHITENING_MIN_VECTORS": 300,
    "WHITENING_REFIT_GROWTH": 0.2,
    "BATCH_SIZE": 32,
    "ASYNC": None,
    "QUEUE": None,
    "SWEEP_AFTER_SECONDS": 300,
    "REFRESH_INTERVAL": 1.0,
    "BACKENDS": {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend", "OPTIONS": {}}},
    "SIGNAL_PROCESSOR": "visual_search.signals.SignalProcessor",
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_INDEX_BYTES": 50 * 1024 * 1024,
    "MAX_PIXELS": 40_000_000,
    "API_MODEL": None,
    "API_FILTERS": {},
    "API_DEFAULT_LIMIT": 12,
    "API_MAX_LIMIT": 50,
    "API_RESULT_SERIALIZER": "visual_search.api.serializers.SearchResultSerializer",
    "SEARCH_THROTTLE_RATE": "30/min",
    "ALLOWED_FORMATS": ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"],
    "TRAINING_CATEGORY_FIELD": None,
    "TRAINING": {},
}

# Defaults changed on purpose, each with its line in docs/upgrading.md: {key: (0.1's, now)}.
CHANGED_DEFAULTS = {
    "WHITENING": ("pca", "learned"),
    "QUERY_EXPANSION": (3, 0),
    "ALLOWED_FORMATS": (["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"], ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"]),
}


def test_the_released_keys_and_defaults_are_kept():
    # New keys may come; none of the released ones may go or change its default unannounced.
    kept = {**RELEASED_DEFAULTS, **{name: now for name, (_, now) in CHANGED_DEFAULTS.items()}}
    assert {name: DEFAULTS.get(name) for name in RELEASED_DEFAULTS} == kept
    assert {name: SPEC[name].default for name in RELEASED_DEFAULTS if name in SPEC} == kept
    upgrading = (ROOT / "docs" / "upgrading.md").read_text()
    for name, (before, now) in CHANGED_DEFAULTS.items():
        assert RELEASED_DEFAULTS[name] == before and f"`{name}`" in upgrading and repr(now) in upgrading


@pytest.mark.parametrize("name", list(SPEC))
def test_every_key_has_a_type_a_valid_default_and_one_line_of_doc(name):
    spec = SPEC[name]
    assert spec.types and spec.doc.strip() and "\n" not in spec.doc
    assert spec.validate(spec.default) == []
    # Valid: no error nor warning. (WEIGHTS' default may add a note: Keras has not downloaded them yet.)
    assert [m for m in check_for(name)(spec.default) if m.level >= checks.WARNING] == []


def test_every_key_has_exactly_one_check():
    """A deep key (marked in the spec) has one named function in checks.py; any other, its spec's validation."""
    assert set(DEEP_CHECKS) <= set(SPEC)
    for name, spec in SPEC.items():
        assert (name in DEEP_CHECKS) == spec.deep, f"{name}: deep in the spec and a check in checks.py go together"
        assert check_for(name) == (DEEP_CHECKS[name] if spec.deep else spec.validate)


def test_a_deep_check_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already has its check"):
        deep_check("WEIGHTS")(lambda value: [])
    with pytest.raises(ValueError):
        deep_check("BATCH_SIZE")(lambda value: [])
    assert DEEP_CHECKS["WEIGHTS"] is visual_search_checks.check_weights


def test_the_id_table_lists_every_id_the_code_uses():
    sources = (ROOT / "visual_search" / "checks.py").read_text() + (ROOT / "visual_search" / "conf.py").read_text()
    used = set(re.findall(r"visual_search\.[EWI]\d{3}", sources))
    assert used == set(CHECK_IDS)
    by_key = {i for spec in SPEC.values() for i in spec.ids}
    assert by_key | {"visual_search.E014", "visual_search.W002", *PROJECT_IDS} == set(CHECK_IDS)


def test_the_id_scheme():
    """E001-E019: one setting each; E020-E039: kinds of error any setting may have; W: warnings; I: notes."""
    own = {spec.check_id for spec in SPEC.values() if spec.check_id}
    assert all(int(i[-3:]) < 20 for i in own) and len(own) == sum(1 for s in SPEC.values() if s.check_id)
    assert all(20 <= int(i[-3:]) < 40 for i in KINDS)
    assert all(i[-4] in "EWI" for i in CHECK_IDS)
    assert all(40 <= int(i[-3:]) < 60 if i[-4] == "E" else 10 <= int(i[-3:]) < 20 for i in PROJECT_IDS)


def test_the_spec_names_what_the_code_accepts():
    assert SPEC["POOLING"].choices == POOLINGS
    assert set(TrainingOptions.__dataclass_fields__) >= {"epochs", "image_size", "dims", "held_out", "seed"}


def test_docs_settings_md_is_the_rendered_spec():
    assert REFERENCE.exists(), f"docs/settings.md is missing: run `{REGENERATE}`"
    assert REFERENCE.read_text() == render_reference(), f"docs/settings.md is out of date: run `{REGENERATE}`"


def test_the_reference_renders_without_django_configured():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [sys.executable, "-m", "visual_search.conf"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout == render_reference()


def test_the_reference_starts_with_the_precedence_and_ends_with_the_ids():
    text = render_reference()
    assert text.index("**Precedence:**") < text.index("### `MODELS`") < text.index("## Check ids")
    assert all(f"### `{name}`" in text for name in SPEC)
    assert all(f"| `{i}` |" in text for i in CHECK_IDS)


def test_values_are_read_on_every_access(settings):
    assert visual_search_settings.BATCH_SIZE == 8  # tests/settings.py
    with override_settings(VISUAL_SEARCH={"BATCH_SIZE": 3}):
        assert visual_search_settings.BATCH_SIZE == 3
        assert visual_search_settings.IMAGE_SIZE == 224  # the default, now that the tests' 64 is gone
        assert visual_search_settings.user_keys == {"BATCH_SIZE"}
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 5}
    assert visual_search_settings.BATCH_SIZE == 5


@pytest.mark.django_db
def test_the_docs_say_to_restart_the_workers_after_a_settings_change():
    """Values are read on every access, but a process keeps the settings.py it started with: the
    docs said only the first, and a shop that added a model to MODELS left its workers running.
    What they quote is what such a worker says of the new model's tasks."""
    from visual_search.tasks import embed_objects

    outcome = embed_objects.apply(args=("testapp.product", "photo", [1]))
    assert outcome.failed() and "testapp.product.photo is not registered with visual search" in str(outcome.result)
    quoted = '("... is not registered with visual search")'
    reference = " ".join(render_reference().split())
    assert "After changing a setting, restart the web processes, every Celery worker and beat." in reference
    assert f"before a model was added to `MODELS` fails its tasks {quoted}" in reference
    celery = " ".join((ROOT / "docs" / "celery.md").read_text().split())
    assert "Restart the workers and beat after changing `VISUAL_SEARCH`" in celery and quoted in celery


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="WHITENNIG"):
        visual_search_settings.WHITENNIG  # noqa: B018
    assert not hasattr(visual_search_settings, "whitening")
