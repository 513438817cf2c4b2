"""A broker whose waiting messages cannot be read without taking them (RabbitMQ, Celery's default).

Run here on kombu's in-memory transport, which, like RabbitMQ, answers a passive queue declare with
the number of messages waiting and nothing more (the Redis broker's lists are read instead:
tests/integration/test_sweeps.py). docs/celery.md ("RabbitMQ") says what was run against a real one.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

import visual_search
from tests.conftest import catalogue_image
from visual_search import queue, tasks
from visual_search.models import ImageEmbedding

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def memory_broker(settings):
    settings.CELERY_BROKER_URL = "memory://"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True, "BATCH_SIZE": 4}
    before = current_app.conf.broker_url
    current_app.conf.broker_url = "memory://"
    purge()
    yield current_app
    purge()
    current_app.conf.broker_url = before


def purge() -> None:
    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(current_app.conf.task_default_queue)


def test_the_sweep_leaves_a_backlog_it_cannot_read_to_the_broker(memory_broker, make_product):
    """A reindex of 12 images waits in RabbitMQ (3 messages) past SWEEP_AFTER_SECONDS. The sweep
    could not read the queue, so it queued all 12 again: each beat sweep added the whole backlog
    once more, and each worker start (or one of the sweeps with QUEUE set, which run at once) did too.
    Now it counts what waits and leaves the old pending rows to it; once the queue is empty (the
    messages were lost), it queues them again."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"P{n}", catalogue_image("Lime")) for n in range(12)]
    ImageEmbedding.objects.all().delete()
    assert queue.enqueue("testapp.product", "image", [p.pk for p in products]) == 12
    assert queue.waiting_in_broker(0) is None  # not Redis: its messages cannot be read
    assert queue.waiting_count() == 3
    ImageEmbedding.objects.update(updated_at=timezone.now() - timedelta(hours=1))

    assert tasks.sweep() == 0
    assert tasks.sweep(older_than=0) == 0  # a worker's start-up sweep
    assert queue.waiting_count() == 3  # still the reindex's 3, not 6 or 9

    purge()  # the messages are gone (delivered and lost): nothing waits, the rows are queued again
    assert tasks.sweep() == 12
    assert queue.waiting_count() == 3


def test_a_broker_that_cannot_count_is_swept_as_before(memory_broker, make_product, monkeypatch):
    """Unreachable, or a transport that cannot tell: the old pending rows are queued again."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"P{n}", catalogue_image("Lime")) for n in range(4)]
    ImageEmbedding.objects.all().delete()
    queue.enqueue("testapp.product", "image", [p.pk for p in products])
    monkeypatch.setattr(queue, "waiting_count", lambda: None)
    assert tasks.sweep(older_than=0) == 4
