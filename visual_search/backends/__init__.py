"""Vector index backends, chosen like Django's ``DATABASES``::

    VISUAL_SEARCH = {"BACKENDS": {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend"}}}

Every backend implements :class:`visual_search.backends.base.BaseBackend`.
"""

from __future__ import annotations

import threading

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import settings
from ..tenants import current_tenant
from .base import BaseBackend

_backends: dict[tuple, BaseBackend] = {}
_lock = threading.Lock()


def get_backend(alias: str = "default") -> BaseBackend:
    """The backend configured under ``alias``, one instance per process and configuration."""
    config = settings.BACKENDS.get(alias)
    if config is None:
        raise ImproperlyConfigured(f"VISUAL_SEARCH['BACKENDS'] has no {alias!r} entry.")
    key = (alias, config["BACKEND"], repr(sorted(config.get("OPTIONS", {}).items())))
    backend = _backends.get(key)
    if backend is None:
        with _lock:
            backend = _backends.get(key)
            if backend is None:
                try:
                    cls = import_string(config["BACKEND"])
                except ImportError as exc:
                    raise ImproperlyConfigured(
                        f"VISUAL_SEARCH['BACKENDS'][{alias!r}]['BACKEND'] = {config['BACKEND']!r} cannot be imported: {exc}"
                    ) from exc
                backend = _backends[key] = cls(alias=alias, **config.get("OPTIONS", {}))
    if not backend.serves_tenants and current_tenant() is not None:
        raise ImproperlyConfigured(not_for_tenants(alias, config["BACKEND"]))
    return backend


def not_for_tenants(alias: str, path: str) -> str:
    """Why the backend at ``path`` is refused on a django-tenants platform, and what to do."""
    return (
        f"VISUAL_SEARCH['BACKENDS'][{alias!r}]['BACKEND'] = {path!r} does not keep each schema's vectors apart: on a "
        "django-tenants platform one shop's search could be answered from another shop's vectors. Use "
        "'visual_search.backends.numpy.NumpyBackend' (docs/deployment.md, 'Multi-tenant shops (django-tenants)'), "
        "or set serves_tenants = True on a backend of your own that keeps them apart."
    )


def forget_backends() -> None:
    """Build the backends again on next use (``VISUAL_SEARCH`` changed: see ``apps.py``)."""
    _backends.clear()


__all__ = ["BaseBackend", "forget_backends", "get_backend", "not_for_tenants"]
