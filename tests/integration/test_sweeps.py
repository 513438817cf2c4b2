"""The sweeps on a bad day: several workers starting together (a deploy), an image too slow for the
time limit, a worker process killed by the hard time limit."""

import os
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

import visual_search
from visual_search.models import ImageEmbedding
from tests.conftest import photos
from tests.integration.conftest import redis_broker_only, wait_for
from tests.integration.test_many_workers import embedded_by, settle
from tests.testapp.models import Product

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

def received_lines(worker, task: str) -> int:
    return sum(1 for line in worker.log.read_text().splitlines() if f"Task {task}[" in line and "received" in line.split("]", 1)[-1])

def pending_for_long(make_product, count: int) -> list[Product]:
    """``count`` products whose rows were queued an hour ago and never computed (the broker lost them)."""
    from visual_search.indexing import mark_queued
    from visual_search.registry import get_registration

    paths = [p for paths in photos().values() for p in paths][:count]
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"Product {n}", path) for n, path in enumerate(paths)]
    mark_queued(get_registration("testapp.product", "image"), [p.pk for p in products])
    ImageEmbedding.objects.update(status="pending", updated_at=timezone.now() - timedelta(hours=1))
    assert ImageEmbedding.objects.filter(status="pending").count() == count
    return products

@redis_broker_only
def test_workers_starting_together_queue_each_pending_image_once(broker, redis_server, start_worker, make_product, celery_env):
    """A deploy restarts every worker: each one's start-up sweep queued every pending image, so 4
    workers queued 50,000 pending images 4 times, and two copies running side by side both computed
    the image. One start-up sweep now serves the workers that start together."""
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    products = pending_for_long(make_product, int(os.environ.get("VISUAL_SEARCH_TEST_PENDING", "16")))
    workers = [start_worker(f"w{n}", wait=False) for n in range(int(os.environ.get("VISUAL_SEARCH_TEST_WORKERS", "2")))]
    for worker in workers:
        worker.wait_ready()
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(products), timeout=180, what="all ready")
    settle(workers, quiet=4)
    tasks, computed = received_lines_all(workers), embedded_by(workers)
    print(f"MEASURE start-up: {len(products)} pending, {len(workers)} workers: {tasks} embed tasks, {computed} embedded")
    assert received_lines_all(workers, "visual_search.sweep") == 1
    assert tasks == -(-len(products) // 8)  # the workers' BATCH_SIZE (tests/settings.py)
    assert computed == len(products)

def received_lines_all(workers, task: str = "visual_search.embed_objects") -> int:
    return sum(received_lines(w, task) for w in workers)


@redis_broker_only
def test_a_worker_killed_and_restarted_at_once_still_sweeps(broker, redis_server, start_worker, make_product, celery_env):
    """The shared start-up sweep must not hold back the one a killed worker needs: restarted seconds
    after its first start (inside the window), its batch is queued again at once, not after beat's
    sweep or Redis's visibility timeout (an hour)."""
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "30"
    products = pending_for_long(make_product, 4)
    worker = start_worker("w")
    wait_for(lambda: "embed_objects" in worker.log.read_text(), timeout=60, what="the batch to start")
    worker.kill()  # mid-batch: the message is held until the visibility timeout
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "0"
    again = start_worker("w")
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(products), timeout=90, what="all ready")
    assert received_lines_all([again], "visual_search.sweep") == 1


@redis_broker_only
def test_the_sweeps_leave_a_backlog_waiting_in_the_broker(broker, start_worker, make_product, celery_env):
    """A reindex queued more than the workers do in SWEEP_AFTER_SECONDS: beat's sweep queued every
    row still waiting in Redis again (and each later sweep once more: a backlog of an hour went round
    about six times), and a worker started meanwhile queued the whole backlog again. A pending row
    that no message holds (lost) is still queued."""
    from visual_search import queue
    from visual_search.indexing import mark_queued
    from visual_search.registry import get_registration
    from visual_search.tasks import sweep

    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "1.5"
    paths = [p for paths in photos().values() for p in paths][:33]
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"Product {n}", path) for n, path in enumerate(paths)]
    mark_queued(get_registration("testapp.product", "image"), [products[0].pk])  # pending; its message lost
    backlog = queue.enqueue("testapp.product", "image", [p.pk for p in products[1:]])
    ImageEmbedding.objects.update(updated_at=timezone.now() - timedelta(hours=1))  # all waited past SWEEP_AFTER_SECONDS

    sweep()  # beat's, while the backlog waits: the lost row only
    worker = start_worker("w")  # its start-up sweep (queued behind the backlog): nothing more
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(products), timeout=120, what="all ready")
    settle([worker], quiet=3)
    tasks = received_lines(worker, "visual_search.embed_objects")
    print(f"MEASURE backlog: {len(products)} pending ({backlog} in the broker): {tasks} embed tasks, {embedded_by([worker])} embedded")
    assert tasks == -(-backlog // 8) + 1  # the backlog's (BATCH_SIZE 8), and the lost row's
    assert embedded_by([worker]) == len(products)


def test_a_worker_killed_and_replaced_under_another_name_is_swept_for(broker, redis_server, start_worker, make_product, celery_env):
    """The killed-worker check keyed on the node name: a worker killed mid-batch and replaced by one
    with another name (containers with random host names, celery -n worker-%h-%i) inside the shared
    start-up sweep's minute swept nothing, and its batch waited for beat's sweep (SWEEP_AFTER_SECONDS
    and more) or Redis's visibility timeout (an hour). A worker whose liveness note lapsed is now
    noticed by the others, whatever their names."""
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    celery_env["VISUAL_SEARCH_TEST_HEARTBEAT"] = "1"
    celery_env["VISUAL_SEARCH_TEST_EMBED_DELAY"] = "60"
    products = pending_for_long(make_product, 4)
    doomed = start_worker("doomed")  # its start-up sweep opens the shared minute
    wait_for(lambda: ImageEmbedding.objects.filter(embed_attempts=1).count() == len(products), timeout=60, what="the batch to start")
    doomed.kill()
    celery_env["VISUAL_SEARCH_TEST_EMBED_DELAY"] = "0"
    start_worker("replacement")
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(products), timeout=60, what="all ready")


@redis_broker_only
@pytest.mark.parametrize("prefix", ["", "shop:"])
def test_what_waits_in_redis_is_read_with_the_transport_s_key_prefix(broker, redis_server, prefix):
    """kombu's global_keyprefix (one Redis shared by several projects) prefixes the queue's keys; the
    sweep's reading of what waits must find them there, or it queues the whole backlog again."""
    from visual_search import queue

    def connect_anew(options):
        broker.conf.broker_transport_options = options
        broker._pool, broker.amqp._producer_pool = None, None  # the pools were made with the old options

    connect_anew({"global_keyprefix": prefix} if prefix else {})
    try:
        queue.send(queue.EMBED_OBJECTS, ("testapp.product", "image", [7, "8"], False))
        queue.send(queue.EMBED_OBJECTS, ("testapp.product", "image", [9], False, "fp"))
        assert redis.Redis(port=redis_server.port).exists(f"{prefix}celery")
        assert queue.waiting_in_broker(60) == {("testapp.product", "image"): {("7", None), ("8", None), ("9", "fp")}}
    finally:
        connect_anew({})


def test_a_gevent_pool_worker_busy_past_the_heartbeat_timeout_is_not_taken_for_dead(broker, redis_server, start_worker, celery_env):
    """With --pool gevent the timer that wrote the liveness note is a greenlet, and TensorFlow computing
    (or loading the model) never yields to gevent's hub: a batch longer than HEARTBEAT_TIMEOUT made the
    worker look dead, and another worker queued its batch a second time. Here every task holds the
    process 3 heartbeat timeouts without yielding; the other worker must see the gevent one alive."""
    pytest.importorskip("gevent")
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    celery_env["VISUAL_SEARCH_TEST_HEARTBEAT"] = "1"  # HEARTBEAT_TIMEOUT 3 s
    redis.Redis(port=redis_server.port, db=1).flushdb()
    watcher = start_worker("watcher", options=("--queues", "nothing"))
    celery_env["VISUAL_SEARCH_TEST_BLOCKING_DELAY"] = "9"
    green = start_worker("green", pool="gevent", concurrency=4)  # runs the start-up sweep: 9 s, the hub held
    wait_for(lambda: any("visual_search.sweep[" in line and "succeeded" in line for line in green.log.read_text().splitlines()),
             timeout=60, what="the sweep to end")
    time.sleep(3)
    assert "stopped without shutting down" not in watcher.log.read_text() + green.log.read_text()
    green.stop()
    assert "Traceback" not in green.log.read_text()


def test_a_solo_pool_worker_busy_past_the_heartbeat_timeout_is_not_taken_for_dead(broker, redis_server, start_worker, celery_env):
    """With --pool solo a task runs in the worker's main process, whose timer wrote the liveness note:
    a batch longer than HEARTBEAT_TIMEOUT (a minute) stopped the notes, another worker took the busy
    one for dead and queued the sweep for its work (its images computed twice, attempts counted).
    Here every task waits 3 heartbeat timeouts; the other worker must see the solo one alive."""
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    celery_env["VISUAL_SEARCH_TEST_HEARTBEAT"] = "1"  # HEARTBEAT_TIMEOUT 3 s
    redis.Redis(port=redis_server.port, db=1).flushdb()  # no worker listed, no sweep noted, by earlier tests
    watcher = start_worker("watcher", options=("--queues", "nothing"))  # takes no task: only watches the notes
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "9"
    solo = start_worker("solo", pool="solo")  # runs the start-up sweep (queued by the watcher): 9 s in its main process
    wait_for(lambda: any("visual_search.sweep[" in line and "succeeded" in line for line in solo.log.read_text().splitlines()),
             timeout=60, what="the sweep to end")
    time.sleep(3)  # a note that lapsed during the task is found by the watcher's next one
    assert "stopped without shutting down" not in watcher.log.read_text() + solo.log.read_text()
    assert received_lines_all([solo], "visual_search.sweep") == 1
