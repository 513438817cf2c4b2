"""Hooks into Celery worker processes."""

from __future__ import annotations

import logging

from celery import bootsteps
from celery.signals import celeryd_init, worker_ready

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


class SweepOnReconnect(bootsteps.StartStopStep):
    """Consumer step: when the worker connects to the broker again after losing it, queue the sweep.

    A Redis restarted without persistence (or failed over) comes back empty: the tasks queued
    before were gone, the rows stayed pending, and nothing queued them again until beat's sweep
    (after ``SWEEP_AFTER_SECONDS``, where beat runs at all) or a worker restart.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        # The first connection's sweep is worker_ready's (its callback is still to be called then).
        if c.restart_count > 0 and c.init_callback is None:
            logger.info("Visual search: connected to the broker again; queueing the sweep for work it may have lost")
            _sweep_on_start()


def _add_consumer_step(sender=None, instance=None, **kwargs) -> None:
    """Before the worker builds its consumer: add :class:`SweepOnReconnect` to its app."""
    if instance is not None:
        instance.app.steps["consumer"].add(SweepOnReconnect)


def connect_worker_signals() -> None:
    worker_ready.connect(_sweep_on_start, weak=False, dispatch_uid="visual_search.sweep_on_start")
    celeryd_init.connect(_add_consumer_step, weak=False, dispatch_uid="visual_search.sweep_on_reconnect")
