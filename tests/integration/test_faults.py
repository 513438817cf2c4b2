"""Faults injected for real: a worker killed mid-batch, the broker down when a product is saved."""

import time

import pytest

import visual_search
from visual_search.models import ImageEmbedding
from tests.conftest import catalogue_image, photos
from tests.integration.conftest import redis_broker_only, wait_for
from tests.testapp.models import Product

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def add_products(make_product, count):
    """``count`` products, one shop photo each, queued together when the pause ends; their photos."""
    gallery = [p for paths in photos().values() for p in paths][:count]
    with visual_search.pause_indexing():
        for n, path in enumerate(gallery):
            make_product(f"Product {n}", path)
    return gallery


def counts():
    return {s: ImageEmbedding.objects.filter(status=s).count() for s in ("pending", "ready", "failed")}


def test_worker_killed_mid_batch_loses_nothing(broker, start_worker, make_product, celery_env, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 4}
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "1.5"
    worker = start_worker("doomed")
    gallery = add_products(make_product, 24)
    wait_for(lambda: counts()["ready"] >= 4, timeout=90, what="the first batch")
    worker.kill()
    at_kill = counts()
    assert at_kill["pending"] > 0, "the worker finished before it could be killed"

    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "0"
    start_worker("survivor")  # its start-up sweep re-queues what the dead worker held
    wait_for(lambda: counts()["ready"] == len(gallery), timeout=120, what=f"all ready (at kill: {at_kill})")
    assert ImageEmbedding.objects.count() == len(gallery)


@redis_broker_only
def test_broker_down_when_saving_then_computed_once_it_is_back(broker, redis_server, start_worker, make_product):
    redis_server.stop()
    started = time.monotonic()
    product = make_product("Lemon", catalogue_image("Lemon"))  # the shop keeps working
    assert time.monotonic() - started < 15
    assert Product.objects.filter(pk=product.pk).exists()
    assert ImageEmbedding.objects.for_object(product).get().status == "pending"

    redis_server.start()
    start_worker()
    row = wait_for(
        lambda: ImageEmbedding.objects.for_object(product).filter(status="ready").first(), timeout=90, what="sweep"
    )
    assert row.status == "ready"


def test_rolled_back_save_runs_no_task(broker, start_worker, make_product):
    from django.db import transaction

    start_worker()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_product("Vanishing", catalogue_image("Lime"))
        raise RuntimeError
    kept = make_product("Kept", catalogue_image("Mango"))
    wait_for(lambda: ImageEmbedding.objects.for_object(kept).filter(status="ready").exists(), what="the kept product")
    assert ImageEmbedding.objects.count() == 1


@redis_broker_only
def test_redis_restarted_empty_mid_batch_then_all_computed(broker, redis_server, start_worker, make_product, celery_env, settings):
    """Redis restarted without persistence while a worker ran a batch: the tasks queued behind it
    were gone with it, and the rows stayed pending until beat's sweep (minutes later, where beat
    runs) or a worker restart. The worker now sweeps when it connects again."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BATCH_SIZE": 4}
    celery_env["VISUAL_SEARCH_TEST_TASK_DELAY"] = "2"
    worker = start_worker("w")
    gallery = add_products(make_product, 12)
    time.sleep(2)
    redis_server.stop()  # --save '' --appendonly no: it comes back empty
    time.sleep(4)
    assert counts()["pending"] > 0, "the worker finished before Redis went away"
    redis_server.start()
    wait_for(lambda: counts()["ready"] == len(gallery), timeout=120, what=f"all ready (now {counts()})")
    assert ImageEmbedding.objects.count() == len(gallery)
    assert "connected to the broker again" in worker.log.read_text()
