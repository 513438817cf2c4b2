"""Several Celery worker processes share one reindex: every object ends with exactly one embedding.

Each worker's start-up sweep also queues the pending rows, so the same object can sit in two tasks
that run at the same moment on two workers; both then compute it (same bytes, same vector, one
row in the end). Tasks that run after an object is ready compute nothing.
"""

import json
import time

import pytest
import redis

import visual_search
from visual_search import queue
from visual_search.models import ImageEmbedding
from tests.conftest import photos
from tests.integration.conftest import redis_broker_only, wait_for
from tests.testapp.models import Product

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@redis_broker_only
def test_three_workers_share_one_reindex(broker, start_worker, make_product, settings):
    from visual_search.reindex import reindex

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 4}
    paths = [p for paths in photos().values() for p in paths][:48]
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"Product {n}", path) for n, path in enumerate(paths)]
    workers = [start_worker(f"w{n}", wait=False) for n in range(3)]
    for worker in workers:
        worker.wait_ready()

    assert reindex(Product, asynchronous=True)["queued"] == len(products)
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(products), timeout=180, what="all ready")
    served = {w.log.name: w.log.read_text().count("succeeded") for w in workers}
    assert sum(1 for n in served.values() if n) >= 2, served  # the work was spread over the workers
    settle(workers)  # duplicates queued by the start-up sweeps may still be finishing
    computed = embedded_by(workers)
    assert computed >= len(products)
    first = dict(ImageEmbedding.objects.values_list("object_id", "vector"))

    before = succeeded(workers)
    # The same reindex queued twice more, as two staff members pressing the button would: every
    # task finds the bytes unchanged and computes nothing; still one row per object, same vectors.
    for _ in range(2):
        reindex(Product, asynchronous=True)
    wait_for(lambda: succeeded(workers) >= before + 2 * len(products) // 4, timeout=180, what="the repeated tasks")
    settle(workers)
    assert embedded_by(workers) == computed  # nothing computed again
    assert ImageEmbedding.objects.count() == len(products)
    assert dict(ImageEmbedding.objects.values_list("object_id", "vector")) == first


def settle(workers, quiet: float = 3.0, timeout: float = 180) -> None:
    """Wait until no embedding or sweep task waits in Redis or is held by a worker, and no worker
    has finished a task for ``quiet`` seconds.

    A quiet log alone was not enough: a duplicate batch still computing (VGG16 and SQLite's write
    lock on a loaded machine: more than ``quiet`` seconds) finished after the counts were taken, and
    its late ``'embedded'`` broke the comparison. The tasks are acknowledged late, so a task held
    (``unacked``) is one still running or reserved; its log line is written before its ack."""
    deadline = time.monotonic() + timeout
    last, since = succeeded(workers), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for the workers to settle; still queued or held: {work_in_broker(workers)}")
        time.sleep(0.5)
        now = succeeded(workers)
        if now != last or work_in_broker(workers):
            last, since = now, time.monotonic()


def work_in_broker(workers) -> list[str]:
    """The embedding and sweep tasks waiting in the workers' Redis or held by a worker (kombu's Redis
    transport: the queues' lists, and the ``unacked`` hash of messages taken and not acknowledged)."""
    client = redis.Redis.from_url(workers[0].broker_url)
    messages = [json.loads(value)[0] for value in client.hvals("unacked")]
    for key in client.scan_iter(_type="list"):
        messages += [json.loads(value) for value in client.lrange(key, 0, -1)]
    names = [message.get("headers", {}).get("task") for message in messages]
    return [name for name in names if name in (queue.EMBED_OBJECTS, queue.SWEEP)]


def succeeded(workers) -> int:
    return sum(w.log.read_text().count("succeeded") for w in workers)


def embedded_by(workers) -> int:
    """Images the workers computed, from the task results they logged."""
    return sum(
        int(line.split("'embedded': ")[1].split(",")[0])
        for w in workers
        for line in w.log.read_text().splitlines()
        if "'embedded': " in line
    )
