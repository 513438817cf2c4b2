"""Vector index backends, chosen like Django's ``DATABASES``::

    VISUAL_SEARCH = {"BACKENDS": {"default": {"BACKEND": "visual_search.backends.numpy.NumpyBackend"}}}

Every backend implements :class:`visual_search.backends.base.BaseBackend`.
"""

from __future__ import annotations

import threading

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import settings
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
    return backend


def forget_backends() -> None:
    """Build the backends again on next use (``VISUAL_SEARCH`` changed: see ``apps.py``)."""
    _backends.clear()


__all__ = ["BaseBackend", "forget_backends", "get_backend"]
