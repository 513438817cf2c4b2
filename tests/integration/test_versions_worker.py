"""Switching model versions on real Celery workers: searches stay whole until the switch."""

import pytest

import visual_search
from tests.conftest import catalogue_image
from tests.integration.conftest import redis_broker_only, wait_for
from tests.testapp.models import Product
from visual_search.embeddings.spec import settings_fingerprint
from visual_search.serving import current_fingerprint
from visual_search.models import ImageEmbedding, ModelVersion
from visual_search.versions import activate, rollback

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NAMES = ["Lemon", "Lime", "Mango", "Kiwi", "Banana"]


def test_asynchronous_activation_and_rollback_on_a_worker(broker, start_worker, make_product, trained, embed_calls, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}  # this process re-reads at once
    start_worker()
    products = {n: make_product(n, catalogue_image(n)) for n in NAMES}
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(NAMES), timeout=120, what="pretrained vectors")
    version = trained()

    queued = activate(version, asynchronous=True)
    assert queued.status == "building"
    # Until the switch, searches answer from the pretrained vectors, every product there.
    assert current_fingerprint() == settings_fingerprint()
    assert len(visual_search.search_by_image(catalogue_image("Mango").read_bytes(), Product, limit=10)) == len(NAMES)
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status == "active", timeout=180, what="the switch")
    version.refresh_from_db()
    assert version.progress["done"] == version.progress["total"] == len(NAMES)
    assert ImageEmbedding.objects.filter(fingerprint=version.fingerprint, status="ready").count() == len(NAMES)
    assert current_fingerprint() == version.fingerprint  # this process follows within REFRESH_INTERVAL
    embed_calls.clear()
    results = visual_search.search_by_image(catalogue_image("Mango").read_bytes(), Product, limit=10)
    assert len(results) == len(NAMES) and results[0].object == products["Mango"]
    assert embed_calls == [1]  # the query only: the catalogue vectors came from the worker

    # Nothing changed: the rollback queues nothing to compute and switches at the first check.
    assert rollback(asynchronous=True) is None
    wait_for(lambda: not ModelVersion.objects.filter(status="active").exists(), timeout=120, what="the rollback")
    assert ModelVersion.objects.get(pk=version.pk).status == "retired"


def held_checks(redis_server) -> list:
    """The steps of the build's checks that a worker took and has not acknowledged (kombu's Redis
    transport keeps them in its ``unacked`` hash until the visibility timeout gives them back)."""
    import base64
    import json

    import redis

    steps = []
    for value in redis.Redis(port=redis_server.port).hvals("unacked"):
        message = json.loads(value)[0]
        if message["headers"].get("task") == "visual_search.activate_version":
            args = json.loads(base64.b64decode(message["body"]))[0]
            steps.append(args[2])
    return steps


def killed_holding_the_check(start_worker, make_product, trained, celery_env, settings, redis_server):
    """A catalogue indexed, a trained version's switch started, and the worker holding its next
    check killed (each task waits 3 s, so it is killed while it holds one). Returns the version.

    Killed once it holds the next check alone: a check acknowledges its message only after it
    has sent the next one (late acknowledgement), and a kill in between left two held."""
    before = start_worker("before")
    for name in NAMES:
        make_product(name, catalogue_image(name))
    wait_for(lambda: ImageEmbedding.objects.filter(status="ready").count() == len(NAMES), timeout=120, what="pretrained vectors")
    before.stop()  # the doomed worker alone takes the checks
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 1}
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "3"  # each task waits: the worker is killed while it holds the check
    doomed = start_worker("doomed", concurrency=2)
    version = trained()
    activate(version, asynchronous=True)

    def next_check_held():
        progress = ModelVersion.objects.get(pk=version.pk).progress
        return "left" in progress and held_checks(redis_server) == [progress["step"]]

    wait_for(next_check_held, timeout=120, what="the first check done, the next one held by the worker")
    doomed.kill()
    return version


@redis_broker_only
def test_a_worker_killed_while_holding_the_switch_s_next_check_delays_nothing(
    broker, redis_server, start_worker, make_product, trained, celery_env, settings
):
    """Redis gives a killed worker's messages back after its visibility timeout (an hour by
    default, and these tests leave it so): the check it held would have waited that long. The next
    worker's start-up sweep sends it again, and the switch goes on within seconds."""
    version = killed_holding_the_check(start_worker, make_product, trained, celery_env, settings, redis_server)
    version.refresh_from_db()
    assert version.status == "building" and held_checks(redis_server) == [version.progress["step"]]

    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "0"
    start_worker("doomed")  # restarted, as systemd or Kubernetes does
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status == "active", timeout=90, what="the switch (without the sweep: an hour)")
    assert ImageEmbedding.objects.filter(fingerprint=version.fingerprint, status="ready").count() == len(NAMES)


@redis_broker_only
def test_a_worker_replaced_under_another_name_resumes_the_switch_at_once(
    broker, redis_server, start_worker, make_product, trained, celery_env, settings
):
    """A worker killed while it held the switch's next check, replaced under another name (random
    container host names) less than a minute after another worker's start: the replacement's start-up
    sweep was skipped (another worker's covered the minute) and nothing else says a worker was killed,
    so the switch waited for the sweep queued for the dead worker (its note lapsing: about 70 s).
    The replacement now sends the check again as it starts."""
    import redis

    from visual_search import workers

    celery_env["VISUAL_SEARCH_TEST_CACHE"] = redis_server.url.replace("/0", "/1")
    shared = redis.Redis(port=redis_server.port, db=1)
    shared.flushdb()  # no worker listed, no sweep noted, by earlier tests
    version = killed_holding_the_check(start_worker, make_product, trained, celery_env, settings, redis_server)
    held = ModelVersion.objects.get(pk=version.pk).progress["step"]

    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "0"
    shared.set(f":1:{workers.START_SWEEP_KEY}", 1, ex=workers.START_SWEEP_WINDOW)  # another worker started just now (a deploy)
    replacement = start_worker("replacement")
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).progress.get("step") != held, timeout=20,
             what="the check sent again (without it: the dead worker's sweep, about 70 s)")
    assert "not queueing it again" in replacement.log.read_text()
    wait_for(lambda: ModelVersion.objects.get(pk=version.pk).status == "active", timeout=120, what="the switch")
