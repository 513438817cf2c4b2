"""What the package logs, and how: counts whose nouns agree (:func:`counted`), and warnings of a
service that is down (the cache: Redis restarting), said once a while per process.

Such a warning came once per call: a page of 10 results logged 21, each search one more, and the
line that said what to check drowned in its copies.
"""

from __future__ import annotations

import logging
import time


def counted(count: int, noun: str, plural: str = "") -> str:
    """"1 image", "0 images", "2 images": a count with its noun agreeing. Log lines and the commands'
    output are English throughout (``@no_translations``), so English's one plural rule is all there is."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


class OccasionalWarning:
    """``message`` logged as a warning at most once every ``every`` seconds in this process; the
    times between go to DEBUG, so nothing is lost to a log that keeps them."""

    def __init__(self, logger: logging.Logger, message: str, every: float = 60.0):
        self.logger, self.message, self.every = logger, message, every
        self.last = float("-inf")  # time.monotonic() of this process's last warning

    def __call__(self, *args) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.logger.debug(self.message, *args)
            return
        self.last = now
        self.logger.warning(self.message, *args)
