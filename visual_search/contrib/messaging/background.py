"""Where the slow part of a message runs, so that the webhook answers the service at once.

The messenger's ``BACKGROUND`` setting: ``"celery"`` (the task in :mod:`.tasks`), ``"thread"`` (a
thread of the web process), ``"inline"`` (before the webhook answers: tests and debugging), or None:
Celery when the project uses it (:func:`visual_search.queue.use_celery`, as indexing does), else a
thread. A broker that cannot be reached falls back to a thread, so the customer is still answered.
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

from visual_search import queue
from visual_search.conf import settings as visual_search_settings
from visual_search.tenants import in_current_schema

from .messages import IncomingMessage, masked
from .messenger import Messenger
from .tasks import HANDLE_MESSAGE, handle_message

logger = logging.getLogger("visual_search")

# A message that waited in the broker longer than this (workers down, a long backlog) is dropped by
# the worker that reaches it, unanswered and its photo never fetched: the customer has moved on, and
# the message (their chat id, a WhatsApp customer's phone number) is not acted on hours later.
ANSWER_WITHIN_SECONDS = 3600


def mode(messenger: Messenger) -> str:
    chosen = messenger.settings.BACKGROUND
    if chosen:
        return chosen
    return "celery" if queue.use_celery() else "thread"


def run(messenger: Messenger, message: IncomingMessage, site_url: str | None = None, limited: bool = False) -> None:
    """Answer ``message`` later (or now, ``"inline"``); returns as soon as the work is handed over."""
    args = (messenger.path(), message.as_dict(), site_url, limited)
    where = mode(messenger)
    if where == "inline":
        handle_message(*args)
        return
    if where == "celery":
        try:
            queue.send(HANDLE_MESSAGE, args, queue=messenger.settings.QUEUE or visual_search_settings.QUEUE,
                       expires=ANSWER_WITHIN_SECONDS, argsrepr=shown_args(messenger, message))
            return
        except Exception as exc:  # kombu's OperationalError and friends: the broker is unreachable
            logger.warning("%s: could not queue the answer to chat %s (%s); answering from a thread",
                           messenger.name, masked(message.chat_id), exc)
    # In the shop's schema the webhook came to (django-tenants): the thread's connection starts in the public one.
    threading.Thread(target=in_current_schema(_in_thread), args=args, name=f"visual-search-{messenger.name}", daemon=True).start()


def shown_args(messenger: Messenger, message: IncomingMessage) -> str:
    """The task's arguments as Celery shows them (the message's ``argsrepr``: worker events, Flower,
    ``celery inspect``): the chat id masked, as in log lines; the message's own arguments are whole."""
    return f"({messenger.path()!r}, {message.kind} message from chat {masked(message.chat_id)})"


def _in_thread(*args) -> None:
    try:
        handle_message(*args)
    finally:
        connections.close_all()  # this thread's own connections; the request's are not touched
