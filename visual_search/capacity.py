"""How many photo searches one process embeds at once: ``VISUAL_SEARCH["MAX_CONCURRENT_SEARCHES"]``.

Under ASGI (uvicorn, daphne) Django runs each request's synchronous view in a thread of its own, and
under gunicorn's ``--threads`` each thread takes a request: nothing else bounds how many searches
run VGG16 at once in one process. TensorFlow already spreads one search over every core, so more at
once add memory (64 at once took a uvicorn process from 1.0 to 1.5 GB), not speed. Beyond the limit
a search waits for a slot, at most :data:`WAIT_SECONDS`, then :class:`TooManySearches` is raised:
the API and the search page answer 503 ``busy`` with ``Retry-After``, the bots say they are busy.

Only the decoding and the network's pass count (the work and the memory of a search); similar
products by id average stored vectors and never run the network, so they are not counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .conf import settings
from .exceptions import TooManySearches
from .logs import OccasionalWarning

logger = logging.getLogger("visual_search")
# A burst refuses many searches at once: one line a minute says so, and what to weigh.
BUSY_WARNING = OccasionalWarning(
    logger,
    "Search by photo is busy: %s searches at once in this process (MAX_CONCURRENT_SEARCHES), and searches that waited "
    "%s s for one to finish were refused with 503 'busy'; if that is often, add web processes or raise the setting "
    "where memory allows (said once a minute per process).",
)

# A search takes 0.1 to 1 s of the network (docs/performance.md): a few seconds lets a burst queue
# behind the running ones rather than fail, and keeps a request from hanging on a process that
# stays overloaded.
WAIT_SECONDS = 5
# What a refused search's Retry-After says: about as long as the burst was waited on already.
RETRY_AFTER_SECONDS = 5
# While the process loads the network (the first search of a process not warmed up: 5 to 7 s on two
# cores of an AMD EPYC without AVX-512), the searches holding the slots wait for it, not for work: a
# search waiting for a slot then waits WAIT_SECONDS from the load's end, checking this often, but
# never longer than LOAD_PATIENCE_SECONDS in all (a load that hangs must not hold requests for ever).
LOAD_CHECK_SECONDS = 0.25
LOAD_PATIENCE_SECONDS = 60

_changed = threading.Condition()
_running = 0


def running() -> int:
    """How many searches of this process hold a slot now."""
    return _running


@contextmanager
def search_slot(wait: float | None = None, loading: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold one of the process's ``MAX_CONCURRENT_SEARCHES`` slots for the ``with`` block (None:
    no limit). Waits at most ``wait`` seconds (:data:`WAIT_SECONDS`) for one, else raises
    :class:`TooManySearches`; counted from the end of a load while ``loading()`` says the process
    loads its network (at most :data:`LOAD_PATIENCE_SECONDS` in all)."""
    global _running
    wait = WAIT_SECONDS if wait is None else wait
    arrived = time.monotonic()
    deadline = arrived + wait
    with _changed:
        # Read on every search, so that override_settings applies at once; counted even without a
        # limit, so that setting one mid-flight counts the searches already running.
        while (limit := settings.MAX_CONCURRENT_SEARCHES) is not None and _running >= limit:
            now = time.monotonic()
            if loading is not None and now - arrived < LOAD_PATIENCE_SECONDS and loading():
                deadline = max(deadline, now + wait)  # the slots' holders wait for the network, not for work
            left = deadline - now
            if left <= 0:
                BUSY_WARNING(limit, wait)
                raise TooManySearches(limit, retry_after=RETRY_AFTER_SECONDS)
            _changed.wait(min(left, LOAD_CHECK_SECONDS) if loading is not None else left)
        _running += 1
    try:
        yield
    finally:
        with _changed:
            _running -= 1
            _changed.notify()
