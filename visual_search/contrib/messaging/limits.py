"""Per-chat rate limits and "seen before", kept in Django's default cache.

Both rely on the cache's atomic ``add`` and ``incr``: with several web processes, use a shared
cache (Redis, Memcached), or each process counts on its own, as the photo-search throttle does.

The keys hold no chat id nor delivery id, only a keyed hash of them (:func:`hashed`): a WhatsApp
chat id is the customer's phone number, and its message ids encode that number too; a cache (a
Redis snapshot on disk, ``KEYS *``) showed them.

On a django-tenants platform the keys are each shop's (:func:`visual_search.tenants.tenant_key`),
with or without its ``KEY_FUNCTION``: a customer who writes to two shops' bots is counted by each,
and one shop's delivery ids (Telegram numbers each bot's updates from its own counter) never mark
another shop's as seen.
"""

from __future__ import annotations

import time

from django.core.cache import cache
from django.utils.crypto import salted_hmac

from visual_search.tenants import tenant_key

PREFIX = "visual_search:messaging"
# Services retry a delivery for hours at most (Telegram: up to a day of pending updates).
SEEN_FOR_SECONDS = 24 * 3600


def first_time(channel: str, event_id: str) -> bool:
    """Whether this delivery is new; a second call with the same id (a retry) answers False.

    An empty id cannot be told apart from another, so it always counts as new.
    """
    if not event_id:
        return True
    return cache.add(tenant_key(f"{PREFIX}:{channel}:seen:{hashed(event_id)}"), 1, SEEN_FOR_SECONDS)


def allow(channel: str, chat_id: str, rate: tuple[int, int] | None) -> bool:
    """Count one message of ``chat_id``; False once it sent more than ``rate`` (messages, seconds) in
    the current window. Fixed windows: cheap, and a burst at a window's edge gets at most twice the rate."""
    if rate is None:
        return True
    count, seconds = rate
    key = tenant_key(f"{PREFIX}:{channel}:rate:{hashed(chat_id)}:{int(time.time() // seconds)}")
    cache.add(key, 0, seconds)
    try:
        return cache.incr(key) <= count
    except ValueError:  # expired between add and incr: this message starts a new window
        cache.add(key, 1, seconds)
        return True


def warn_once(channel: str, chat_id: str, rate: tuple[int, int]) -> bool:
    """Whether to tell a limited chat to wait: once per window, so the bot never floods it back."""
    seconds = rate[1]
    return cache.add(tenant_key(f"{PREFIX}:{channel}:warned:{hashed(chat_id)}:{int(time.time() // seconds)}"), 1, seconds)


def hashed(value: str) -> str:
    """``value`` as a cache key holds it: an HMAC with the project's ``SECRET_KEY``, which every
    process shares, so a phone number cannot be found again by hashing every possible one."""
    return salted_hmac(PREFIX, str(value)).hexdigest()[:32]
