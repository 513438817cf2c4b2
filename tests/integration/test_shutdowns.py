"""Workers stopped while they compute: a deploy's shutdown is not an image's fault, a kill is."""

import os
import signal
from pathlib import Path

import pytest
import redis

import visual_search
from visual_search.models import ImageEmbedding
from tests.conftest import catalogue_image
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def computing(make_product, start_worker, celery_env, pool="prefork"):
    """One product whose task has started computing it (its attempt counted) on a slow worker."""
    celery_env["VISUAL_SEARCH_TEST_CACHE"] = celery_env["CELERY_RESULT_BACKEND"].replace("/0", "/1")  # Redis, whatever the broker
    celery_env["VISUAL_SEARCH_TEST_EMBED_DELAY"] = "60"
    worker = start_worker("w", pool=pool)
    with visual_search.pause_indexing():
        product = make_product("Lemon", catalogue_image("Lemon"))
    row = ImageEmbedding.objects.for_object(product)
    wait_for(lambda: row.get().embed_attempts == 1, timeout=60, what="the task to start computing")
    # The task counts its attempt, then notes it in the cache for a shutdown to take back: a stop
    # between the two (a loaded machine widens the gap) would find nothing to take back.
    notes = redis.Redis.from_url(celery_env["VISUAL_SEARCH_TEST_CACHE"])
    wait_for(lambda: notes.keys("*visual_search:attempt:*"), timeout=30, what="the attempt noted in the cache")
    return worker, row


def pool_children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("stop", ["cold", "term-then-kill"])
def test_a_deploy_stopping_a_worker_mid_batch_counts_no_attempt(broker, start_worker, make_product, celery_env, stop):
    """A cold shutdown (SIGQUIT, a second Ctrl+C), or SIGTERM then SIGKILL when the stop's timeout
    runs out (systemd, docker stop, Kubernetes): each counted an unfinished attempt on every image of
    the batches held, and after MAX_EMBED_ATTEMPTS deploys during a long reindex healthy images were
    failed with "Took longer than the time limit"."""
    worker, row = computing(make_product, start_worker, celery_env)
    if stop == "cold":
        os.kill(worker.process.pid, signal.SIGQUIT)
        worker.process.wait(30)
    else:
        os.kill(worker.process.pid, signal.SIGTERM)
        # A stop timeout is seconds at least (systemd's 90 s, Kubernetes' 30 s): the attempt is taken
        # back as the shutdown begins, while the batch still computes; then the SIGKILL.
        wait_for(lambda: row.get().embed_attempts == 0, timeout=15, what="the attempt taken back as the shutdown begins")
        assert worker.process.poll() is None, "the worker stopped before the kill: not what the test means"
        worker.kill()
    assert row.get().embed_attempts == 0
    assert row.get().status == "pending"


def test_a_pool_process_killed_mid_batch_still_counts_an_attempt(broker, start_worker, make_product, celery_env):
    """The OOM killer (or the hard time limit) killing the process computing it: that image may be
    the cause, and its attempt stays counted."""
    worker, row = computing(make_product, start_worker, celery_env)
    for child in pool_children(worker.process.pid):
        os.kill(child, signal.SIGKILL)
    wait_for(lambda: "WorkerLostError" in worker.log.read_text() or "exited with" in worker.log.read_text(), timeout=30, what="the loss noticed")
    worker.stop()
    assert row.get().embed_attempts >= 1


def test_the_hard_time_limit_still_counts_an_attempt(broker, start_worker, make_product, celery_env):
    """Past the hard time limit the pool sends SIGTERM first: a task still in Python code ends with
    SystemExit, and taking its attempt back as for a shutdown let such an image be swept for ever."""
    celery_env["VISUAL_SEARCH_TEST_TIME_LIMIT"] = "4"
    worker, row = computing(make_product, start_worker, celery_env)
    wait_for(lambda: "TimeLimitExceeded" in worker.log.read_text(), timeout=30, what="the hard time limit")
    worker.stop()
    assert row.get().embed_attempts == 1


def test_gevent_s_hard_time_limit_still_counts_an_attempt(broker, start_worker, make_product, celery_env):
    """gevent's pool ends a task past the hard time limit with gevent.Timeout, not SystemExit: the
    attempt was taken back as for a deploy, and such an image was swept again for ever."""
    pytest.importorskip("gevent")
    celery_env["VISUAL_SEARCH_TEST_TIME_LIMIT"] = "4"
    worker, row = computing(make_product, start_worker, celery_env, pool="gevent")
    wait_for(lambda: "Hard time limit (4.0s) exceeded" in worker.log.read_text(), timeout=30, what="the hard time limit")
    worker.stop()
    assert row.get().embed_attempts == 1
