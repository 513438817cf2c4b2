"""Progress bars of the management commands: one look for reindexing, rebuilding, switching, training."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm


def bar(command: BaseCommand, *, desc: str, unit: str, total: int = 0, show: bool = True) -> tqdm:
    """A tqdm bar on the command's stderr.

    The bar rewrites its own line, so it writes to the stream under Django's ``OutputWrapper``.
    """
    stream = getattr(command.stderr, "_out", sys.stderr)
    return tqdm(total=total, unit=unit, desc=desc, disable=not show, file=stream, dynamic_ncols=True)


class Followed:
    """A bar fed by ``progress(done, total)`` calls (the total may grow: images changed meanwhile)."""

    def __init__(self, command: BaseCommand, *, desc: str, unit: str = "img", show: bool = True):
        self.command, self.desc, self.unit, self.show, self.bar = command, desc, unit, show, None

    def __enter__(self) -> Followed:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = bar(self.command, desc=self.desc, unit=self.unit, total=total, show=self.show)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
