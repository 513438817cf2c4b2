"""Where work runs: on Celery workers when a broker is configured, else in this process.

Everything that schedules work (the signal processor, bulk reindexing, model version switches,
training) goes through here. Tasks are sent by name (:data:`EMBED_OBJECTS`...), so nothing below
the Celery task module imports it: :mod:`visual_search.tasks` defines them under these names.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from celery import current_app
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import router, transaction
from django.utils.translation import gettext
from kombu.serialization import loads, prepare_accept_content

from . import serving
from .batching import chunked
from .conf import settings
from .exceptions import WeightsUnavailable
from .indexing import index_objects, mark_queued
from .logs import counted
from .models import ImageEmbedding
from .registry import get_registration
from .tenants import per_tenant, tenant_key

logger = logging.getLogger("visual_search")

# The Celery task names (stable: they are in queued messages and in shops' beat schedules).
EMBED_OBJECTS = "visual_search.embed_objects"
SWEEP = "visual_search.sweep"
ACTIVATE_VERSION = "visual_search.activate_version"
TRAIN_MODEL = "visual_search.train_model"
FIT_WHITENING = "visual_search.fit_whitening"

# After a wave of indexing (products added, a bulk upload), one whitening and score calibration fit
# on the workers: queued FIT_DELAY seconds after the image that made it due, put off while images
# are still being indexed, so that it learns from all of them once (a fit searches customer-like
# views of up to 200 images: about two minutes of VGG16 on 2 cores).
FIT_DELAY = 60
FIT_QUEUED_KEY = "visual_search:fit_whitening_queued"

# Publishing to a broker that is down: a couple of quick tries, then give up (rows stay pending).
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def use_celery() -> bool:
    """Whether work goes through Celery: ``VISUAL_SEARCH["ASYNC"]``, else whether a broker is set."""
    if settings.ASYNC is not None:
        return bool(settings.ASYNC)
    if getattr(django_settings, "CELERY_BROKER_URL", None):
        return True
    return bool(current_app.conf.broker_url)


CELERY_APP_MISSING = (
    "CELERY_BROKER_URL is set, but this process has no Celery app configured from your settings: import "
    "it in your project's __init__.py (`from .celery import app as celery_app`, docs/celery.md), or tasks "
    "go to Celery's default broker, amqp://localhost."
)


def celery_app_knows_tenants() -> bool:
    """Whether the Celery app in use is tenant-schemas-celery's (``CeleryApp``): its tasks carry the
    schema they were sent from and run in it, on a django-tenants platform."""
    app = current_app._get_current_object()
    return any(cls.__module__.split(".")[0] == "tenant_schemas_celery" for cls in type(app).__mro__)


def celery_app_missing() -> bool:
    """Whether ``CELERY_BROKER_URL`` is set while the Celery app in use has no broker: the project's
    app was never imported (the ``__init__.py`` line of Celery's Django set-up), so Celery's default
    app would publish to amqp://localhost, whatever the settings say."""
    return bool(getattr(django_settings, "CELERY_BROKER_URL", None)) and not current_app.conf.broker_url


def worker_command() -> str:
    """The command that starts a worker for this project's Celery app: ``Celery("shop")`` in the
    ``shop`` package (Celery's Django layout) -> ``celery -A shop worker``. A placeholder where the
    app's name is not an importable module, as `-A` would not find it."""
    name = current_app.main
    try:
        found = bool(name) and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    return f"celery -A {name if found else 'yourproject'} worker"


def broker_problem(exc: BaseException) -> str:
    """What to say when a task could not be published."""
    return CELERY_APP_MISSING if celery_app_missing() else f"{exc}; is the broker running?"


def send(name: str, args: Sequence[Any] = (), **options: Any) -> None:
    """Queue the Celery task ``name`` (one of the names above) with ``apply_async`` options.

    Through the registered task when this process has it (so ``task_always_eager`` and the task's
    own options apply), else by name alone. Raises what the broker raises when it is unreachable.
    """
    task = current_app.tasks.get(name)
    if task is not None:
        task.apply_async(args=tuple(args), **options)
    else:
        current_app.send_task(name, args=tuple(args), **options)


# The sweep reads what waits in a Redis broker this many messages at a time.
PEEK_CHUNK = 1000

Waiting = dict[tuple[str, str], set[tuple[str, str | None]]]


def waiting_in_broker(delivered_within: float) -> Waiting | None:
    """The objects of ``embed_objects`` tasks that the broker still holds for a worker: in the queue,
    or handed to a worker less than ``delivered_within`` seconds ago and not yet acknowledged (that
    worker runs or reserved it; one handed out longer ago may have died with its worker). By
    ``(label, image_field)``: ``(object id, fingerprint or None for every indexing one)``.

    Read from Redis, without taking anything (the queue's lists and the unacknowledged messages
    kombu keeps). None where the broker cannot tell: not Redis, unreachable, or its layout unknown.
    The sweep then queues as it did before it could tell.
    """
    try:
        with current_app.connection_for_read() as connection:
            if connection.transport.driver_type != "redis":
                return None
            channel = connection.default_channel
            client, queue = channel.client, settings.QUEUE or current_app.conf.task_default_queue
            lists = [_key(client, "LRANGE", channel._q_for_pri(queue, priority)) for priority in channel.priority_steps]
            payloads = [json.loads(raw) for key in lists for raw in _all(client, key)]
            since = time.time() - delivered_within
            recent = client.zrangebyscore(_key(client, "ZRANGEBYSCORE", channel.unacked_index_key), since, "+inf") if delivered_within > 0 else []
            if recent:
                payloads += [json.loads(raw)[0] for raw in client.hmget(_key(client, "HMGET", channel.unacked_key), recent) if raw]
    except Exception:  # noqa: BLE001 - kombu's and redis-py's errors alike: then nobody can tell
        logger.debug("Could not read what waits in the broker", exc_info=True)
        return None
    waiting: Waiting = {}
    for payload in payloads:
        args = _embed_args(payload)
        if args:
            label, image_field, pks = args[:3]
            fingerprint = args[4] if len(args) > 4 else None
            waiting.setdefault((label, image_field), set()).update((str(pk), fingerprint) for pk in pks)
    return waiting


def waiting_count() -> int | None:
    """How many messages wait for a worker in ``QUEUE``, the package's own queue: what a broker whose
    messages cannot be read without taking them (RabbitMQ) can tell, by a passive declare (nothing is
    taken or made). Not those a worker holds unacknowledged. None where it cannot tell, and without
    ``QUEUE``: Celery's default queue holds the shop's other tasks too (it may never be empty), and
    there the sweep waits behind the indexing backlog anyway."""
    if not settings.QUEUE:
        return None
    try:
        with current_app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)  # unreachable: 2 s, not kombu's default 6 s, per sweep
            return int(connection.default_channel.queue_declare(queue=settings.QUEUE, passive=True).message_count)
    except Exception:  # noqa: BLE001 - unreachable, no such queue yet, a transport that cannot count
        logger.debug("Could not count what waits in the broker", exc_info=True)
        return None


def _key(client, command: str, key: str) -> str:
    """``key`` as ``command`` must name it: kombu's client adds the transport's ``global_keyprefix``
    to the keys of the commands kombu itself sends, not to those of the others."""
    prefix = getattr(client, "global_keyprefix", "")
    return key if not prefix or command in getattr(client, "PREFIXED_SIMPLE_COMMANDS", ()) else prefix + key


def _all(client, key: str) -> list:
    """Every item of a Redis list, a chunk at a time. Items pushed meanwhile shift the rest on (read
    twice at worst); items taken from the other end are gone (delivered): none is skipped."""
    items, start = [], 0
    while chunk := client.lrange(key, start, start + PEEK_CHUNK - 1):
        items += chunk
        start += PEEK_CHUNK
    return items


def _embed_args(payload: dict) -> list | None:
    """The arguments of a queued ``embed_objects`` message (Celery's message protocol 2), else None."""
    try:
        if payload.get("headers", {}).get("task") != EMBED_OBJECTS:
            return None
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = loads(body, payload["content-type"], payload["content-encoding"], accept=prepare_accept_content(current_app.conf.accept_content))[0]
        return list(args) if len(args) >= 3 else None
    except Exception:  # noqa: BLE001 - another protocol, a serializer not accepted: not ours to read
        return None


def schedule_fit() -> bool:
    """Queue one whitening fit on the Celery workers, unless one is queued already. Without beat
    nothing else would learn it until someone ran ``visual_search_reindex``, and every search said
    "no confident match". Returns whether it was queued."""
    try:
        if not cache.add(tenant_key(FIT_QUEUED_KEY), True, timeout=FIT_DELAY * 30):
            return False
    except Exception:  # the cache is down: queue it anyway; the task checks again whether it is due
        logger.debug("No cache to tell whether a whitening fit is queued", exc_info=True)
    try:
        send(FIT_WHITENING, countdown=FIT_DELAY, queue=settings.QUEUE, retry=True, retry_policy=PUBLISH_RETRY)
    except Exception as exc:
        fit_unqueued()
        logger.warning("Could not queue the visual search whitening fit: %s The sweep or visual_search_reindex learns it.", broker_problem(exc))
        return False
    return True


def fit_after_removal() -> None:
    """Images left the index (their objects deleted, images cleared, hidden): once the transaction
    commits, queue one whitening fit (:func:`schedule_fit`). It learns the whitening and score
    calibration again only if the catalogue shrank by ``WHITENING_REFIT_GROWTH``: without it they
    kept counting deleted products until the sweep (beat) or ``visual_search_reindex`` ran. The rows
    are counted on the worker, not in the request that deleted. Without Celery, or with tasks run
    eagerly (tests), nothing is queued: as after indexing, the command or the sweep fits."""
    if use_celery() and not current_app.conf.task_always_eager:
        transaction.on_commit(_fit_after_removal, using=router.db_for_write(ImageEmbedding))


# When this process last queued (or failed to queue) a fit after a removal: a queryset's delete()
# of 500 products commits 500 removals at once, and with the broker down each try takes 1.5 s.
# Per schema on a multi-tenant platform (tenants.py): each shop's own fit.
_fit_tried_at: dict[tuple, float] = {}


def _fit_after_removal() -> None:
    key = per_tenant(())
    if time.monotonic() - _fit_tried_at.get(key, float("-inf")) < FIT_DELAY:
        return  # queued by this process at most a minute ago: it runs after this commit
    _fit_tried_at[key] = time.monotonic()
    schedule_fit()  # not if one is queued and not yet started: it counts the rows after this commit


def fit_unqueued() -> None:
    """The queued fit has started (or could not be queued): the next wave may queue one."""
    try:
        cache.delete(tenant_key(FIT_QUEUED_KEY))
    except Exception:
        logger.debug("No cache to clear the queued whitening fit", exc_info=True)


def enqueue(label: str, image_field: str, pks: Iterable[Any], force: bool = False, fingerprint: str | None = None) -> int:
    """Schedule embedding of ``pks``: Celery tasks of ``BATCH_SIZE`` ids, or in-process when no broker.

    Never raises: a save must not fail because the broker is down. Rows stay pending (those of
    objects never indexed are made pending first, :func:`~visual_search.indexing.mark_queued`) and
    the sweep picks them up when it is back. Returns how many objects were scheduled (or done).
    ``fingerprint`` limits the work to one model version (see ``embed_objects``).
    """
    pks = [pk if isinstance(pk, (int, str)) else str(pk) for pk in pks]
    if not pks:
        return 0
    if not use_celery():
        return _run_in_process(label, image_field, pks, force, fingerprint)
    done, unsent, problem, size = 0, 0, None, int(settings.BATCH_SIZE)
    for marked in chunked(pks, size * MARK_BATCHES):
        if fingerprint is None:  # a model version's build counts its own progress
            _mark_queued(label, image_field, marked)
        if problem is not None:  # the broker failed once: the others are only marked, for the sweep
            unsent += len(marked)
            continue
        sent, problem = _send_batches(label, image_field, marked, size, force, fingerprint)
        done += sent
        unsent += len(marked) - sent
    if problem is not None:
        # One line for the whole call: a selection of 100,000 tried the broker once per batch (three
        # connection attempts each), holding an admin request for minutes, and logged each time.
        logger.warning(
            "Could not queue visual search work for %s (%s): %s The rows stay pending; "
            "the sweep task queues them again once tasks can be sent.",
            label,
            counted(unsent, "id"),
            problem,
        )
    return done


# Pending rows are made for this many tasks' ids at once (a few queries), before they are sent: they
# were made per task, five queries each, 15,000 for "select all" of 100,000 products in an admin request.
MARK_BATCHES = 50


def _send_batches(label: str, image_field: str, pks: list, size: int, force: bool, fingerprint: str | None) -> tuple[int, str | None]:
    """Send ``pks`` in tasks of ``size``; returns how many were sent and, if the broker failed,
    why (the batches after the failed one are not tried)."""
    done = 0
    for batch in chunked(pks, size):
        try:
            args = (label, image_field, batch, force) + ((fingerprint,) if fingerprint else ())
            send(EMBED_OBJECTS, args, queue=settings.QUEUE, retry=True, retry_policy=PUBLISH_RETRY)
            done += len(batch)
        except Exception as exc:  # kombu's OperationalError and friends: the broker is unreachable
            return done, broker_problem(exc)
    return done, None


def _mark_queued(label: str, image_field: str, pks: list) -> None:
    try:
        mark_queued(get_registration(label, image_field), pks)
    except Exception:  # the database: the work is queued all the same, and shows as missing
        logger.warning("Could not mark %s of %s pending before queueing them", counted(len(pks), "image"), label, exc_info=True)


def _run_in_process(label: str, image_field: str, pks: list, force: bool, fingerprint: str | None = None) -> int:
    try:
        fingerprints = [fingerprint] if fingerprint else None
        report = index_objects(get_registration(label, image_field), pks, force=force, fingerprints=fingerprints)
    except WeightsUnavailable as exc:  # the setup, not these objects: its message says what to do
        logger.error("Visual search indexing of %s %s failed; the rows stay pending. %s", label, pks, exc)
        return 0
    except Exception:
        logger.exception("Visual search indexing of %s %s failed; the rows stay pending", label, pks)
        return 0
    return len(pks) - len(report.retry)


# Without Celery the work runs in the staff member's request. Beyond VISUAL_SEARCH["IN_REQUEST_IMAGES"]
# images (100), or beyond IN_REQUEST_SECONDS (25 s) at the speed this process measured its network
# at, it would outlast a web server's timeout (gunicorn's 30 s: 70 of the demo's images took 55.6 s
# in one admin request on 2 cores of an AMD EPYC without AVX-512, model loading included), killing
# the request half way; staff are told to run the command instead (that request now: refused in
# 0.1 s, "about 49 seconds").
# Up to this many images are never timed first: a product's own few. Timing a fresh network sends a
# blank image's views through it twice (1.4 s on that EPYC: what indexing two images takes).
UNTIMED_IMAGES = 8


class TooMuchForARequest(Exception):
    """More images than ``VISUAL_SEARCH["IN_REQUEST_IMAGES"]``, or than this process embeds within
    ``IN_REQUEST_SECONDS``, to index in a request, without Celery: nothing was started."""

    def __init__(self, images: int, command: str, seconds: float | None = None):
        super().__init__(f"{images} images to index in the request" + (f", about {seconds:.0f} s" if seconds else ""))
        self.images, self.command, self.seconds = images, command, seconds

    def words(self) -> str:
        """What staff read: why nothing was started, and the command that does it."""
        if self.seconds:
            return gettext(
                "Nothing was started: without Celery, indexing the %(count)d images in this request would take about "
                "%(seconds)d seconds on this server, longer than a web request may take. Run `%(command)s` (it shows "
                "its progress), or set up Celery workers."
            ) % {"count": self.images, "seconds": round(self.seconds), "command": self.command}
        return gettext(
            "Nothing was started: without Celery, the %(count)d images would be indexed in this request, longer than a "
            "web request may take. Run `%(command)s` (it shows its progress), or set up Celery workers."
        ) % {"count": self.images, "command": self.command}


def check_in_request(images: int, only: tuple[str, ...] | None = None, command: str | None = None, fingerprint: str | None = None) -> None:
    """Raise :class:`TooMuchForARequest` when, without Celery, ``images`` would be indexed in a web
    request, more than ``IN_REQUEST_IMAGES`` or for longer than ``IN_REQUEST_SECONDS`` by the network
    (of ``fingerprint``'s version; default: the one indexing uses) as fast as this process measured
    it; its message names ``command`` (default: ``visual_search_reindex``, with ``--only``)."""
    if not images or use_celery():
        return
    # The same work: everything selected is recomputed (force), or only the images in those states.
    command = command or "manage.py visual_search_reindex " + (f"--only {','.join(only)}" if only else "--force")
    if images > int(settings.IN_REQUEST_IMAGES):
        raise TooMuchForARequest(images, command)
    limit = settings.IN_REQUEST_SECONDS
    if limit is None or images <= UNTIMED_IMAGES:
        return
    started = time.monotonic()
    # What the request spent loading and timing the network here counts too (5 to 7 s to load it
    # in a process that had not, on that EPYC).
    seconds = _seconds_for(images, fingerprint) + (time.monotonic() - started)
    if seconds > float(limit):
        logger.info("Not indexing %s images in a request: about %.0f s at this process's speed, IN_REQUEST_SECONDS is %s", images, seconds, limit)
        raise TooMuchForARequest(images, command, seconds)


def _seconds_for(images: int, fingerprint: str | None) -> float:
    """How long ``images`` would take through the network here (of each version that indexing
    computes, unless ``fingerprint`` names one); 0 when it cannot be loaded (the work then fails as
    it would have, and says why)."""
    try:
        fingerprints = [fingerprint] if fingerprint else serving.indexing_fingerprints()
        return images * sum(serving.get_extractor(each).image_seconds() for each in fingerprints)
    except Exception:
        logger.debug("Could not time the network before indexing in a request", exc_info=True)
        return 0.0
