"""Hooks into Celery worker processes."""

from __future__ import annotations

import logging
import sys
import threading
import time

from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool
from celery.signals import celeryd_init, worker_ready, worker_shutdown, worker_shutting_down
from celery.worker import state
from django.core.cache import cache
from django.db import connections

from . import queue
from .conf import settings
from .indexing import take_back
from .tenants import shop_schemas
from .versions import resume_stalled_builds

logger = logging.getLogger("visual_search")

# Workers that start (or reconnect) within this many seconds of each other share one sweep: a deploy
# restarting 4 workers queued every pending image 4 times, and copies that ran side by side on two
# workers both computed it. Held in Django's cache, which the workers must share (docs/celery.md).
START_SWEEP_WINDOW = 60
START_SWEEP_KEY = "visual_search:start_sweep"
RECONNECT_SWEEP_KEY = "visual_search:reconnect_sweep"  # its own: a reconnect is never the start's event
# Set while a worker (by its node name) runs, deleted when it shuts down: found at its next start, its
# last run was killed (OOM, the hard time limit of its main process, a lost machine), and it sweeps at
# once whatever the window says, for the batch it held.
RUNNING_KEY = "visual_search:worker_running:{}"
RUNNING_TIMEOUT = 7 * 24 * 3600
# That check keys on the name: a killed worker replaced by one of another name (containers with random
# host names, celery -n worker-%h-%i) was never noticed, and its batch waited for beat's sweep or the
# broker's visibility timeout (an hour). So each worker also notes itself alive every HEARTBEAT seconds
# (the note lasts HEARTBEAT_TIMEOUT) in a list of the running workers; the first worker to find one
# listed whose note lapsed (killed: a clean shutdown leaves the list) takes it off and queues the sweep.
# A minute: a main process busy for a while is not taken for dead. The note is written by the main
# process's timer, which waits while that process runs a task: with --pool solo (tasks run in the main
# process) a batch longer than a minute made the worker look dead, and its batch was queued a second
# time. There the note comes from a thread of its own (:func:`_heartbeat_thread`). With --pool gevent the
# timer is a greenlet, and so is a thread started by the patched ``threading``: TensorFlow computing (or
# loading the model) never yields to gevent's hub, so neither wrote while a batch ran, the worker looked
# dead and its batch was queued a second time. There the note comes from a thread of the operating
# system (:func:`_start_native_heartbeat`).
HEARTBEAT = 10.0
HEARTBEAT_TIMEOUT = 60.0
ALIVE_KEY = "visual_search:worker_alive:{}"
WORKERS_KEY = "visual_search:workers"
WORKERS_LOCK = "visual_search:workers_lock"
# Set when the worker shuts down: stops the heartbeat thread of a solo-pool (or gevent-pool) worker.
_stopped = threading.Event()
_beating: list[threading.Thread] = []
# Held by a gevent-pool worker's native heartbeat thread while it writes a note (see _shut_down).
_native_writing: list = []


def _first_in_window(key: str = START_SWEEP_KEY) -> bool:
    """Whether no other worker queued its start-up (or reconnect) sweep in the last ``START_SWEEP_WINDOW`` seconds."""
    try:
        return bool(cache.add(key, True, timeout=START_SWEEP_WINDOW))
    except Exception:  # the cache is down: sweep all the same (at worst once more per worker)
        logger.debug("No cache to tell whether another worker swept just now", exc_info=True)
        return True


def _was_killed(hostname: str | None) -> bool:
    """Whether the last run of worker ``hostname`` ended without shutting down; marks this run as running."""
    if not hostname:
        return False
    try:
        killed = not cache.add(RUNNING_KEY.format(hostname), True, timeout=RUNNING_TIMEOUT)
        if killed:
            cache.touch(RUNNING_KEY.format(hostname), RUNNING_TIMEOUT)
        return killed
    except Exception:
        logger.debug("No cache to tell how this worker's last run ended", exc_info=True)
        return False


def _shut_down(sender=None, **kwargs) -> None:
    """The worker stops cleanly: its next start is an ordinary one (see :func:`_was_killed`), and
    the others do not take it for dead (:func:`_heartbeat`)."""
    hostname = getattr(sender, "hostname", None)
    _stopped.set()
    for thread in _beating:  # its last note, if it is writing one, before the notes are deleted
        thread.join(timeout=5)
    for writing in _native_writing:
        if writing.acquire(True, 5):
            writing.release()
    try:
        cache.delete(RUNNING_KEY.format(hostname))
        _listed(lambda names: names.discard(hostname))
        cache.delete(ALIVE_KEY.format(hostname))
    except Exception:
        logger.debug("No cache to note this worker's shutdown", exc_info=True)


def _listed(change):
    """Apply ``change`` to the set of running workers' names, under a lock; returns what it returns."""
    for _ in range(50):
        if cache.add(WORKERS_LOCK, True, timeout=5):
            try:
                names = set(cache.get(WORKERS_KEY) or ())
                result = change(names)
                cache.set(WORKERS_KEY, names, timeout=RUNNING_TIMEOUT)
                return result
            finally:
                cache.delete(WORKERS_LOCK)
        time.sleep(0.1)
    return None


def _heartbeat(hostname: str) -> None:
    """Note this worker alive; queue the sweep for any listed worker whose note lapsed (it was killed)."""

    def take_off_the_dead(names: set) -> set:
        names.add(hostname)
        alive = cache.get_many([ALIVE_KEY.format(name) for name in names])
        dead = {name for name in names if name != hostname and ALIVE_KEY.format(name) not in alive}
        names -= dead
        return dead

    try:
        cache.set(ALIVE_KEY.format(hostname), True, timeout=HEARTBEAT_TIMEOUT)
        dead = _listed(take_off_the_dead)
    except Exception:
        logger.debug("No cache to note this worker alive", exc_info=True)
        return
    if dead:
        logger.warning("Visual search: worker %s stopped without shutting down; queueing the sweep for the work it held", ", ".join(sorted(dead)))
        # Its rows were last touched before it died, at least this long ago; tasks that live workers
        # started since are left to them.
        _queue_sweep(older_than=HEARTBEAT_TIMEOUT - HEARTBEAT)


def _take_back_attempts(sender=None, **kwargs) -> None:
    """The worker begins to shut down (warm or cold): a deploy, not the images, stops the batches it
    computes. Take back their attempts now, before a stop timeout's SIGKILL (systemd, docker, Kubernetes)
    can end them unfinished: three deploys during a long reindex failed healthy images as too slow."""
    for request in list(state.active_requests):
        if request.name != queue.EMBED_OBJECTS:
            continue
        try:
            # The task noted them in its shop's schema; this process is in the public one.
            any(take_back(request.id) for _schema in shop_schemas())
        except Exception:  # the cache or the database: the attempts stay counted, as for a kill
            logger.warning("Visual search: could not take back the attempts of task %s on shutdown", request.id, exc_info=True)


def _sweep_on_start(sender=None, **kwargs) -> None:
    """When a worker starts, queue whatever was left pending (broker down, worker killed).

    Pending rows of any age count here: whatever queued them before is gone or will find the
    work done (tasks skip unchanged images). Once for the workers that start together: another
    worker's sweep of the last ``START_SWEEP_WINDOW`` seconds covers this start too, unless this
    worker's last run was killed (its batch is to be queued again now).
    """
    hostname = getattr(sender, "hostname", None)
    _warn_if_sweeps_go_unread(sender)
    _warn_if_time_limits_ignored(sender)
    killed = _was_killed(hostname)
    if hostname:
        _heartbeat(hostname)
        _beat_repeatedly(sender, hostname)
    if not _first_in_window() and not killed:
        logger.info("Visual search: another worker queued the sweep less than %s s ago; not queueing it again", START_SWEEP_WINDOW)
        _resume_builds()
        return
    _queue_sweep()


def _warn_if_sweeps_go_unread(consumer) -> None:
    """Say so when this worker reads ``QUEUE`` but not Celery's default queue, where the sweeps go
    (beat's, and those queued when a worker starts or is found dead: so that a backlog in ``QUEUE``
    does not hold them up). A shop whose only workers read ``QUEUE`` never ran a sweep: pending
    images were never queued again, and a sweep message piled up every five minutes."""
    try:
        consumed = {declared.name for declared in consumer.task_consumer.queues}
        default = consumer.app.conf.task_default_queue
    except AttributeError:  # not a worker's consumer (a test's stand-in, another pool's layout)
        return
    if settings.QUEUE and settings.QUEUE in consumed and default not in consumed:
        logger.warning(
            "Visual search: this worker reads VISUAL_SEARCH['QUEUE'] (%r) but not Celery's default queue %r, where the "
            "sweep goes. Unless another worker reads %r, pending images are never queued again: start this one with "
            "`-Q %s,%s` (docs/celery.md).", settings.QUEUE, default, default, settings.QUEUE, default,
        )


def _warn_if_time_limits_ignored(consumer) -> None:
    """Say so when this worker's pool does not apply the time limits the shop set: only prefork stops
    a task at ``task_soft_time_limit`` (a batch past it is split in halves, tasks.py) and ends it at
    ``task_time_limit``. With ``--pool threads`` or ``solo`` neither applies, and gevent's hard limit
    strikes only when the task yields to its hub, which TensorFlow computing does not: a batch that
    is too long runs to its end, and an image that never finishes holds its slot until a restart."""
    pool, app = getattr(consumer, "pool", None), getattr(consumer, "app", None)
    if pool is None or app is None or isinstance(pool, PreforkPool):
        return
    controller, task = getattr(consumer, "controller", None), app.tasks.get(queue.EMBED_OBJECTS)
    limits = {
        "task_soft_time_limit": getattr(controller, "soft_time_limit", None) or getattr(task, "soft_time_limit", None) or app.conf.task_soft_time_limit,
        "task_time_limit": getattr(controller, "time_limit", None) or getattr(task, "time_limit", None) or app.conf.task_time_limit,
    }
    limits = {name: value for name, value in limits.items() if value}
    if not limits:
        return
    name = type(pool).__module__.rsplit(".", 1)[-1]
    logger.warning(
        "Visual search: this worker's pool (%s) does not apply %s: only the prefork pool does. A batch of images past "
        "the soft limit is not split in two, it runs to its end, and an image that never finishes holds a slot until "
        "the worker restarts. Run the visual search tasks on a prefork worker (their own queue, VISUAL_SEARCH['QUEUE']), "
        "or lower VISUAL_SEARCH['BATCH_SIZE'] so that a batch stays short (docs/celery.md#worker-pools).",
        {"thread": "threads"}.get(name, name), " and ".join(f"{key}={value:g}" for key, value in limits.items()),
    )


def _resume_builds() -> None:
    """Send again the next check of a model switch in progress, as the start-up sweep would have.

    This worker may replace one killed while it held that check (under another name, so nothing
    here says so): left to the sweep queued for the dead worker, the switch waited a minute more.
    Sent twice (several workers starting), the older check stops (:func:`build_step`)."""
    try:
        for _schema in shop_schemas():  # each shop's, on a django-tenants platform
            resume_stalled_builds(0)
    except Exception:  # the database: beat's sweep, or the one for a dead worker, sends it
        logger.warning("Visual search: could not check for a model switch to resume on worker start", exc_info=True)
    finally:
        connections.close_all()  # none held open by the main process


def _beat_repeatedly(consumer, hostname: str) -> None:
    """Note this worker alive every ``HEARTBEAT`` seconds: from the worker's timer, or from a thread
    where tasks run in the main process (the solo pool), so that a long batch does not stop the notes,
    or from a thread of the operating system where they run in greenlets (the gevent pool)."""
    pool = getattr(consumer, "pool", None)
    if getattr(pool, "is_green", False) and _start_native_heartbeat(hostname):
        return
    if isinstance(pool, SoloPool):
        _stopped.clear()
        thread = threading.Thread(target=_heartbeat_thread, args=(hostname,), name="visual-search-heartbeat", daemon=True)
        _beating[:] = [thread]
        thread.start()
        return
    timer = getattr(consumer, "timer", None)
    if timer is not None:
        timer.call_repeatedly(HEARTBEAT, _heartbeat, (hostname,))


def _heartbeat_thread(hostname: str) -> None:
    """Note worker ``hostname`` alive until it shuts down (:func:`_shut_down`)."""
    while not _stopped.wait(HEARTBEAT):
        _heartbeat(hostname)


def _start_native_heartbeat(hostname: str) -> bool:
    """Under gevent's monkey patching, note worker ``hostname`` alive from a thread of the operating
    system: a greenlet (the timer's, or a patched ``threading.Thread``) waits while TensorFlow computes.
    False where gevent has not patched ``threading`` (another green pool: the timer, as before)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return False
    start = monkey.get_original("_thread", "start_new_thread")
    sleep = monkey.get_original("time", "sleep")
    writing = monkey.get_original("_thread", "allocate_lock")()
    _stopped.clear()
    _native_writing[:] = [writing]

    def beat() -> None:
        while True:
            sleep(HEARTBEAT)  # not _stopped.wait(): gevent's Event, made for this process's hub
            with writing:
                if _stopped.is_set():
                    return
                _heartbeat(hostname)

    start(beat, ())
    return True


def _queue_sweep(older_than: float = 0) -> None:
    try:
        for _schema in shop_schemas():  # one per shop on a django-tenants platform, sent from its schema
            queue.send(queue.SWEEP, kwargs={"older_than": older_than})
    except Exception as exc:  # on start, on a reconnect, or for a dead worker: one message for all three
        logger.warning(
            "Could not queue the visual search sweep: %s Pending images wait for beat's sweep or the next worker start; "
            "once the broker is back, `manage.py visual_search_reindex --async --only pending` queues them now.",
            queue.broker_problem(exc),
        )


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
            if _first_in_window(RECONNECT_SWEEP_KEY):
                logger.info("Visual search: connected to the broker again; queueing the sweep for work it may have lost")
                _queue_sweep()


def _add_consumer_step(sender=None, instance=None, **kwargs) -> None:
    """Before the worker builds its consumer: add :class:`SweepOnReconnect` to its app."""
    if instance is not None:
        instance.app.steps["consumer"].add(SweepOnReconnect)


def connect_worker_signals() -> None:
    worker_ready.connect(_sweep_on_start, weak=False, dispatch_uid="visual_search.sweep_on_start")
    worker_shutdown.connect(_shut_down, weak=False, dispatch_uid="visual_search.worker_shut_down")
    worker_shutting_down.connect(_take_back_attempts, weak=False, dispatch_uid="visual_search.take_back_attempts")
    celeryd_init.connect(_add_consumer_step, weak=False, dispatch_uid="visual_search.sweep_on_reconnect")
