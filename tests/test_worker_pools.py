"""Celery pools other than prefork: what the package does where tasks run in threads or greenlets."""

from __future__ import annotations

import _thread
import sys
import time
import types

import pytest
from django.core.cache import cache

from visual_search import workers


class Timer:
    """A worker's timer that records what it was asked to repeat (and never runs it)."""

    def __init__(self):
        self.repeated = []

    def call_repeatedly(self, seconds, function, args):
        self.repeated.append((seconds, function, args))


def fake_gevent_monkey() -> types.ModuleType:
    """``gevent.monkey`` as a gevent-pool worker has it: ``threading`` patched, the originals kept."""
    originals = {("_thread", "start_new_thread"): _thread.start_new_thread, ("time", "sleep"): time.sleep,
                 ("_thread", "allocate_lock"): _thread.allocate_lock}
    monkey = types.ModuleType("gevent.monkey")
    monkey.is_module_patched = lambda name: name == "threading"
    monkey.get_original = lambda module, name: originals[(module, name)]
    return monkey


@pytest.fixture
def locmem_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pools"}}
    cache.clear()


def test_a_gevent_worker_notes_itself_alive_from_a_thread_of_the_system(locmem_cache, monkeypatch):
    """With --pool gevent the timer is a greenlet, which waits while TensorFlow computes (it never
    yields to the hub): a batch or the model's loading longer than HEARTBEAT_TIMEOUT made the worker
    look dead, and another worker queued its batch a second time. The notes now come from an OS thread."""
    monkeypatch.setitem(sys.modules, "gevent.monkey", fake_gevent_monkey())
    monkeypatch.setattr(workers, "HEARTBEAT", 0.05)
    timer = Timer()
    consumer = types.SimpleNamespace(pool=types.SimpleNamespace(is_green=True), timer=timer, hostname="g@host")
    workers._beat_repeatedly(consumer, "g@host")
    try:
        assert timer.repeated == []
        cache.delete(workers.ALIVE_KEY.format("g@host"))
        deadline = time.monotonic() + 5
        while cache.get(workers.ALIVE_KEY.format("g@host")) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.get(workers.ALIVE_KEY.format("g@host"))
    finally:
        workers._shut_down(consumer)
    time.sleep(0.2)  # a note after the shutdown would list the worker again, for the others to sweep
    assert cache.get(workers.ALIVE_KEY.format("g@host")) is None
    assert "g@host" not in (cache.get(workers.WORKERS_KEY) or set())


def test_a_green_pool_without_gevent_s_patching_keeps_the_timer(locmem_cache):
    timer = Timer()
    consumer = types.SimpleNamespace(pool=types.SimpleNamespace(is_green=True), timer=timer)
    workers._beat_repeatedly(consumer, "e@host")
    assert [args for _, _, args in timer.repeated] == [("e@host",)]


def worker_consumer(pool, **conf):
    from celery import Celery

    app = Celery("pools", set_as_current=False)
    app.conf.update(conf)
    return types.SimpleNamespace(pool=pool, app=app, controller=types.SimpleNamespace(soft_time_limit=None, time_limit=None))


@pytest.mark.parametrize("pool", ["threads", "solo", "gevent"])
def test_a_worker_whose_pool_ignores_the_time_limits_says_so_at_start(pool, caplog):
    """Only prefork applies task_soft_time_limit: on a threads (solo, gevent) worker a batch past it
    was never split, an image that never ended held a thread, and nothing said so."""
    from celery.concurrency import get_implementation

    cls = get_implementation(pool) if pool != "gevent" else type("TaskPool", (), {"__module__": "celery.concurrency.gevent"})
    consumer = worker_consumer(cls.__new__(cls), task_soft_time_limit=50, task_time_limit=60)
    with caplog.at_level("WARNING", logger="visual_search"):
        workers._warn_if_time_limits_ignored(consumer)
    [message] = [record.getMessage() for record in caplog.records]
    assert f"pool ({pool}) does not apply task_soft_time_limit=50 and task_time_limit=60" in message
    assert "VISUAL_SEARCH['QUEUE']" in message and "BATCH_SIZE" in message


@pytest.mark.parametrize("pool, limit", [("prefork", 50), ("threads", None)])
def test_no_word_on_time_limits_where_they_apply_or_none_is_set(pool, limit, caplog):
    from celery.concurrency import get_implementation

    cls = get_implementation(pool)
    consumer = worker_consumer(cls.__new__(cls), task_soft_time_limit=limit)
    with caplog.at_level("WARNING", logger="visual_search"):
        workers._warn_if_time_limits_ignored(consumer)
    assert caplog.records == []


class GreenTimeout(BaseException):
    """What gevent's pool raises in a task past ``task_time_limit`` (``gevent.Timeout``): not SystemExit."""


@pytest.mark.django_db(transaction=True)
def test_gevent_s_hard_time_limit_still_counts_an_attempt(make_product, monkeypatch):
    """On a gevent worker the hard time limit ends the task with gevent.Timeout, not the SystemExit
    of prefork's SIGTERM: the attempt was taken back as for a deploy, and an image that always passes
    the limit was swept again for ever instead of failing after MAX_EMBED_ATTEMPTS."""
    import visual_search
    from tests.conftest import catalogue_image
    from visual_search import tasks
    from visual_search.models import ImageEmbedding

    with visual_search.pause_indexing(reindex_on_exit=False):
        product = make_product("Lemon", catalogue_image("Lemon"))
    row = ImageEmbedding.objects.for_object(product)

    def too_long(*args, **kwargs):
        raise GreenTimeout("seconds")

    monkeypatch.setattr(tasks, "index_objects", too_long)
    monkeypatch.setattr(tasks.embed_objects, "time_limit", 1)  # past it at once: HARD_LIMIT_MARGIN is 1 s
    with pytest.raises(GreenTimeout):
        tasks.embed_objects.run("testapp.product", "image", [product.pk])
    assert row.get().embed_attempts == 1
