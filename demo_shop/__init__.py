"""A small grocery shop that uses django-visual-search as any shop would."""

from .celery import app as celery_app

__all__ = ["celery_app"]
