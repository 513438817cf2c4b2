"""A broker whose waiting messages cannot be read without taking them (RabbitMQ, Celery's default).

Run here on kombu's in-memory transport, which, like RabbitMQ, answers a passive queue declare with
the number of messages waiting and nothing more (the Redis broker's lists are read instead:
tests/integration/test_sweeps.py). docs/celery.md ("RabbitMQ") says what was run against a real one.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery import current_app
from celery.exceptions import Retry
from django.utils import timezone

import visual_search
from tests.conftest import catalogue_image
from visual_search import queue, tasks
from visual_search.models import ImageEmbedding, ModelVersion
from visual_search.training import jobs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def memory_broker(settings):
    settings.CELERY_BROKER_URL = "memory://"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True, "BATCH_SIZE": 4, "QUEUE": "visual_search"}
    before = current_app.conf.broker_url
    current_app.conf.broker_url = "memory://"
    forget_connections()
    purge()
    yield current_app
    purge()
    current_app.conf.broker_url = before
    forget_connections()


def forget_connections() -> None:
    """Drop this process's broker connections: the app's producer pool keeps the broker it was made
    for whatever ``broker_url`` says later, so after tests/integration (Redis) the tasks sent here
    went to that Redis and the memory broker counted 0 (the whole suite failed, each file alone passed)."""
    current_app._pool = None  # kombu keeps the pools by broker: the next send takes memory://'s
    current_app.amqp._producer_pool = None


def purge() -> None:
    with current_app.connection_for_write() as connection:
        for name in ("visual_search", current_app.conf.task_default_queue):
            connection.default_channel.queue_purge(name)


def test_the_sweep_leaves_a_backlog_it_cannot_read_to_the_broker(memory_broker, make_product):
    """A reindex of 12 images waits in RabbitMQ (3 messages, in QUEUE) past SWEEP_AFTER_SECONDS. The
    sweep (in Celery's default queue: it runs at once) could not read the queue, so it queued all 12
    again: each beat sweep added the whole backlog once more, and each worker start did too.
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


def test_without_queue_the_shared_default_queue_is_not_counted(memory_broker, make_product, settings):
    """Celery's default queue holds the shop's other tasks too: counted, a busy one would keep lost
    rows waiting for ever. There the sweep queues behind the backlog and queues the old rows, as before."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "QUEUE": None}
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"P{n}", catalogue_image("Lime")) for n in range(4)]
    ImageEmbedding.objects.all().delete()
    queue.enqueue("testapp.product", "image", [p.pk for p in products])
    assert queue.waiting_count() is None
    assert tasks.sweep(older_than=0) == 4


def test_a_broker_that_cannot_count_is_swept_as_before(memory_broker, make_product, monkeypatch):
    """Unreachable, or a transport that cannot tell: the old pending rows are queued again."""
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"P{n}", catalogue_image("Lime")) for n in range(4)]
    ImageEmbedding.objects.all().delete()
    queue.enqueue("testapp.product", "image", [p.pk for p in products])
    monkeypatch.setattr(queue, "waiting_count", lambda: None)
    assert tasks.sweep(older_than=0) == 4


def _training(progress: dict) -> ModelVersion:
    return ModelVersion.objects.create(label="Adapted", status=ModelVersion.Status.TRAINING, config={"options": {}}, progress=progress)


@pytest.fixture
def trainings(monkeypatch):
    ran = []
    monkeypatch.setattr(tasks, "run_training", lambda pk: ran.append(pk) or ModelVersion.objects.get(pk=pk))
    return ran


def test_a_second_delivery_of_a_training_job_does_not_train_beside_the_first(trainings):
    """RabbitMQ closes the channel of a worker that holds a message unacknowledged past its
    consumer_timeout (30 min; training is acknowledged late), and hands the message to another
    worker at once, while the first worker's process trains on: two workers trained the same
    version side by side, each for its full time, the second overwriting the first. The second
    delivery now finds the first run alive (progress noted a moment ago) and looks again later."""
    version = _training({"stage": "training", "done": 40, "total": 900, "at": time.time() - 5})
    with pytest.raises(Retry):
        tasks.train_model(version.pk)
    assert trainings == []


def test_a_training_job_whose_run_died_or_never_started_is_trained(trainings):
    """Queued a moment ago and never started (its first delivery), started and then silent past
    ALIVE_WITHIN (its worker was killed: another delivery takes over), or a first run killed before
    its first progress: trained."""
    queued = _training({"stage": "queued", "done": 0, "total": 0, "at": time.time()})
    dead = _training({"stage": "features", "done": 3, "total": 90, "at": time.time() - jobs.ALIVE_WITHIN - 1})
    starting = _training({"stage": "queued", "done": 0, "total": 0, "at": time.time() - jobs.ALIVE_WITHIN - 1, "started": True})
    for version in (queued, dead, starting):
        tasks.train_model(version.pk)
    assert trainings == [queued.pk, dead.pk, starting.pk]


def test_a_run_that_has_begun_is_alive_before_its_first_progress(monkeypatch):
    """run_training notes "started" as it begins: a copy delivered before its first progress note
    (while it reads the catalogue) must not take the stage "queued" for a job nobody runs."""
    version = _training({"stage": "queued", "done": 0, "total": 0, "at": time.time()})
    assert not jobs.trained_elsewhere(version)
    seen = []

    def reading_the_catalogue(model):
        seen.append(jobs.trained_elsewhere(ModelVersion.objects.get(pk=version.pk)))
        raise jobs.NotEnoughData("stop here")

    monkeypatch.setattr(jobs, "shop_items", reading_the_catalogue)
    jobs.run_training(version.pk)
    assert seen == [True]
