"""Switching model versions on real Celery workers: searches stay whole until the switch."""

import pytest

import visual_search
from tests.conftest import catalogue_image
from tests.integration.conftest import wait_for
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
