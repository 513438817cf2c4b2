"""Management commands of django-visual-search (see commands/)."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import CommandError


def model_from_label(label: str):
    """The model class named ``app_label.ModelName``, or a CommandError that says how to name it."""
    try:
        return apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise CommandError(f"No model {label!r}; use app_label.ModelName.") from exc
