"""The Celery task that answers a message. Its arguments are JSON-safe: the messenger's dotted path,
the message as a dict, the site URL.

A messenger's app makes Celery's ``autodiscover_tasks()`` find it by importing it in its own
``tasks.py`` (as ``visual_search.contrib.telegram.tasks`` does).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils.module_loading import import_string

from .handling import handle
from .messages import IncomingMessage

HANDLE_MESSAGE = "visual_search.messaging.handle"


# Not acknowledged late and not retried: a customer would rather get no answer than the same one twice.
@shared_task(name=HANDLE_MESSAGE, ignore_result=True)
def handle_message(messenger_path: str, message: dict[str, Any], site_url: str | None = None, limited: bool = False) -> None:
    """Answer one message (:func:`.handling.handle`) with a new instance of the messenger class."""
    handle(import_string(messenger_path)(), IncomingMessage.from_dict(message), site_url, limited)
