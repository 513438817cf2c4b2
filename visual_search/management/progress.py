"""Progress bars of the management commands: one look for reindexing, rebuilding, switching, training."""

from __future__ import annotations

import contextlib
import logging
import sys

from django.core.management.base import BaseCommand, OutputWrapper
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def bar(command: BaseCommand, *, desc: str, unit: str, total: int = 0, show: bool = True, close_at_total: bool = True) -> tqdm:
    """A tqdm bar on the command's stderr, that shows once however the work ends.

    The bar rewrites its own line, so it writes to the stream under Django's ``OutputWrapper``
    (under each of them: ``call_command(..., stderr=self.stderr)`` wraps one in another, and a
    wrapper ends every write with a newline). See :class:`Bar` for the rest.
    """
    stream = command.stderr
    while isinstance(stream, OutputWrapper):
        stream = stream._out
    stream = stream or sys.stderr
    terminal = _is_terminal(stream)
    return Bar(
        total=total, unit=unit, desc=desc, disable=not show, file=stream, dynamic_ncols=terminal,
        mininterval=0.1 if terminal else LOG_LINE_EVERY, close_at_total=close_at_total, lines=not terminal,
    )


# Not a terminal (cron, a container's or a CI job's log): a whole line this often, and at the end.
LOG_LINE_EVERY = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Bar(tqdm):
    """A tqdm bar that log lines do not break, and that closes itself when its total is reached.

    A log line written while the bar shows (the model loading, a whitening learned) would leave
    the bar's line behind and the bar redrawn below it: two bars. The package's log lines go above
    the bar instead. Closing at the total keeps the time and rate of the work counted, not of what
    follows it (fitting the whitening); a later ``close()`` changes nothing.
    """

    def __init__(self, *args, close_at_total: bool = True, lines: bool = False, **kwargs):
        self._logs = contextlib.ExitStack()
        self.close_at_total = close_at_total
        self.lines = lines
        super().__init__(*args, **kwargs)
        if not self.disable and (loggers := _console_loggers()):
            self._logs.enter_context(logging_redirect_tqdm(loggers=loggers, tqdm_class=tqdm))

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        if self.close_at_total and self.total and self.n >= self.total:
            self.close()
        return shown

    def close(self) -> None:
        super().close()
        self._logs.close()

    # Not a terminal: a log keeps every carriage-return redraw on one endless line, which a log
    # collector shows only when it ends. There, each state shown is a line of its own.
    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self.lines:
            return super().display(msg, pos)
        if msg == "":
            return False  # tqdm clearing its line: nothing to clear in a log
        # close() marks the bar disabled, shows it a last time, then ends the line itself.
        if not self.disable and self.total and self.n >= self.total:
            return True  # the final state: close() shows it, next or when the work ends (it was written twice)
        self.fp.write((str(self) if msg is None else msg) + ("" if self.disable else "\n"))
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:
        if not self.lines:
            super().clear(nolock)


def _console_loggers() -> list[logging.Logger]:
    """The package's logger and the root one, where they write to the terminal (tqdm would add a
    handler to a logger that has none, and each line would show twice)."""
    return [
        logger
        for logger in (logging.getLogger("visual_search"), logging.root)
        if any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr) for h in logger.handlers)
    ]


class Followed:
    """A bar fed by ``progress(done, total)`` calls (the total may grow: images changed meanwhile).

    ``each_from_zero``: ``progress(0, total)`` starts a bar of its own (the fits of several models).
    """

    def __init__(self, command: BaseCommand, *, desc: str, unit: str = "img", show: bool = True, each_from_zero: bool = False):
        self.command, self.desc, self.unit, self.show, self.bar = command, desc, unit, show, None
        self.each_from_zero = each_from_zero

    def __enter__(self) -> Followed:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.each_from_zero and done == 0:
            self.close()
        if self.bar is None:
            # The total may grow after the count reached it: this bar closes when the work ends.
            self.bar = bar(self.command, desc=self.desc, unit=self.unit, total=total, show=self.show, close_at_total=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fit_bar(command: BaseCommand, *, show: bool = True) -> Followed:
    """The bars of a whitening and calibration fit (``fit_progress``), one per model: customer-like
    views of its images through the network again (4.5 minutes of the demo's first run on two cores
    of an AMD EPYC without AVX-512, which showed nothing but a line meanwhile)."""
    return Followed(command, desc="Customer views", show=show, each_from_zero=True)
