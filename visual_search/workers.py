"""Hooks into Celery worker processes."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from . import queue

logger = logging.getLogger("visual_search")


def _sweep_on_start(sender=None, **kwargs) -> None:
    """When a worker starts, queue whatever was left pending (broker down, worker killed).

    Pending rows of any age count here: whatever queued them before is gone or will find the
    work done (tasks skip unchanged images).
    """
    try:
        queue.send(queue.SWEEP, kwargs={"older_than": 0})
    except Exception as exc:
        logger.warning("Could not queue the visual search sweep on worker start: %s", exc)


def connect_worker_signals() -> None:
    worker_ready.connect(_sweep_on_start, weak=False, dispatch_uid="visual_search.sweep_on_start")
