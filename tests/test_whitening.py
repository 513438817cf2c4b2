"""PCA whitening learned on the catalogue: fitted from stored vectors, applied by the backend."""

import numpy as np
import pytest

import visual_search
from visual_search.models import ImageEmbedding, Whitening
from visual_search.reindex import reindex
from visual_search.ranking import fit_whitening, whiten
from tests.conftest import catalogue_image, photos
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Arla-Standard-Milk", "Oatly-Oat-Milk", "Lemon", "Banana", "Red-Delicious", "Tropicana-Apple-Juice", "Kiwi", "Lime"]


def test_fit_whitening_whitens():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8)) + 3.0
    mean, projection = fit_whitening(data, 8)
    whitened = (data - mean) @ projection
    assert np.allclose(np.cov(whitened.T), np.eye(8), atol=1e-3)
    assert np.allclose(np.linalg.norm(whiten(data, mean, projection), axis=1), 1.0, atol=1e-5)


@pytest.fixture
def catalogue(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": "pca", "WHITENING_MIN_VECTORS": 12, "WHITENING_DIMS": 16}
    with visual_search.pause_indexing(reindex_on_exit=False):
        products = {n: make_product(n, catalogue_image(n)) for n in NAMES}
        for name in NAMES:
            for k, path in enumerate(photos()[name][:2]):
                make_product(f"{name} photo {k}", path)
    return products


def test_reindex_learns_the_whitening_and_search_uses_it(catalogue, settings):
    query = photos()["Lemon"][3].read_bytes()
    whitening_on = settings.VISUAL_SEARCH
    settings.VISUAL_SEARCH = {**whitening_on, "WHITENING": None}
    assert reindex(Product, asynchronous=False)["whitened"] == 0
    plain = visual_search.search_by_image(query, Product, limit=24)
    settings.VISUAL_SEARCH = whitening_on
    counts = reindex(Product, asynchronous=False)
    assert counts["unchanged"] == 24 and counts["whitened"] == 1
    assert Whitening.objects.get().trained_on == 24 and Whitening.objects.get().dimensions == 16
    whitened = visual_search.search_by_image(query, Product, limit=24)
    # Same catalogue image still matches itself exactly; the scores of the others spread out.
    exact = visual_search.search_by_image(catalogue_image("Kiwi").read_bytes(), Product, limit=1)[0]
    assert exact.object == catalogue["Kiwi"] and exact.score == pytest.approx(1.0, abs=1e-3)
    assert np.std([r.score for r in whitened]) > np.std([r.score for r in plain])


def test_the_sweep_refits_once_the_catalogue_grew(catalogue, make_product, settings):
    from visual_search.tasks import sweep

    reindex(Product, asynchronous=False)
    assert Whitening.objects.get().trained_on == 24
    for k, path in enumerate(photos()["Banana"][:3] + photos()["Mango"][:4]):
        make_product(f"new {k}", path)
    assert ImageEmbedding.objects.filter(status="ready").count() == 31
    sweep()
    assert Whitening.objects.get().trained_on == 31


def test_without_beat_the_workers_learn_the_whitening_after_a_wave_of_indexing(catalogue, settings, monkeypatch):
    """Only the sweep (beat, "optional") and visual_search_reindex learned it: a shop whose worker
    indexed its products never got a whitening or scores, and every search said "no confident match".
    A task that embeds images now queues one fit, put off while images are still being indexed."""
    from types import SimpleNamespace

    from django.core.cache import cache

    from visual_search import queue, tasks

    cache.delete(queue.FIT_QUEUED_KEY)
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append((name, options.get("countdown"))))
    monkeypatch.setattr(tasks, "current_app", SimpleNamespace(conf=SimpleNamespace(task_always_eager=False)))
    ids = [str(p.pk) for p in Product.objects.all()]
    tasks.embed_objects.run("testapp.product", "image", ids[:12])
    assert Whitening.objects.count() == 0  # 12 ready: due (WHITENING_MIN_VECTORS), queued, not fitted in the task
    assert sent == [(queue.FIT_WHITENING, queue.FIT_DELAY)]
    tasks.embed_objects.run("testapp.product", "image", ids[12:20])
    assert len(sent) == 1  # one fit queued for the wave
    ImageEmbedding.objects.filter(object_id__in=ids[20:]).update(status="pending")
    assert tasks.fit_whitening.run() == 0 and Whitening.objects.count() == 0
    assert sent[-1] == (queue.FIT_WHITENING, queue.FIT_DELAY)  # put off: images are still being indexed
    assert tasks.fit_whitening.run(postponed=tasks.FIT_MAX_POSTPONED) == 1  # not for ever: an import that never ends
    Whitening.objects.all().delete()
    tasks.embed_objects.run("testapp.product", "image", ids[20:])
    assert tasks.fit_whitening.run() == 1
    assert Whitening.objects.get().trained_on == 24
    sent.clear()
    tasks.embed_objects.run("testapp.product", "image", ids[:1], force=True)
    assert sent == []  # not due again until the catalogue grows by WHITENING_REFIT_GROWTH


def test_the_sweep_refits_once_the_catalogue_shrank(catalogue):
    from visual_search.tasks import sweep

    reindex(Product, asynchronous=False)
    Product.objects.filter(name__in=["Lime photo 0", "Lime photo 1", "Kiwi photo 0"]).delete()
    sweep()
    assert Whitening.objects.get().trained_on == 24  # 21 ready: within WHITENING_REFIT_GROWTH
    Product.objects.filter(name="Kiwi photo 1").delete()
    sweep()
    assert Whitening.objects.get().trained_on == 20  # 24 / 1.2: it learned from products that are gone


def test_without_beat_deleting_products_queues_the_fit_that_a_shrunk_catalogue_needs(catalogue, settings, monkeypatch):
    """Deleting products removed their vectors and queued nothing: only the sweep (beat, "optional")
    noticed that the catalogue had shrunk, so the whitening and score calibration kept counting
    products that are gone. A deletion now queues one fit, which learns them again if they are due."""
    from types import SimpleNamespace

    from django.core.cache import cache

    from visual_search import queue, tasks

    reindex(Product, asynchronous=False)
    assert Whitening.objects.get().trained_on == 24
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    cache.delete(queue.FIT_QUEUED_KEY)
    monkeypatch.setattr(queue, "_fit_tried_at", {})
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append((name, options.get("countdown"))))
    monkeypatch.setattr(queue, "current_app", SimpleNamespace(conf=SimpleNamespace(task_always_eager=False)))
    Product.objects.filter(name__in=["Lime photo 0", "Lime photo 1", "Kiwi photo 0", "Kiwi photo 1"]).delete()
    assert sent == [(queue.FIT_WHITENING, queue.FIT_DELAY)]  # one for the four deletions
    assert tasks.fit_whitening.run() == 1
    assert Whitening.objects.get().trained_on == 20  # 24 / 1.2: it learned from products that are gone
    Product.objects.filter(name="Kiwi").delete()
    assert len(sent) == 1  # queued a moment ago by this process: that fit runs after this deletion
    assert tasks.fit_whitening.run() == 0  # 19 of 20: not due


def test_unreadable_images_are_left_out_of_the_fit_in_one_log_line(catalogue, caplog, settings):
    import logging
    import os

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_AUGMENT": 1}  # customer views: files read
    reindex(Product, asynchronous=False)
    for name in ("Lime photo 0", "Kiwi photo 0", "Lemon photo 1"):
        os.remove(Product.objects.get(name=name).image.path)
    Whitening.objects.all().delete()
    with caplog.at_level(logging.INFO, logger="visual_search"):
        visual_search.whitening.fit_if_needed()
    assert Whitening.objects.get().trained_on == 24  # the stored vectors still count
    [line] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert line.startswith("Whitening: 3 of 24 sampled images left out") and "(and 2 more)" in line


def test_whitening_can_be_switched_off(catalogue, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": None}
    reindex(Product, asynchronous=False)
    assert not Whitening.objects.exists()


def test_learned_whitening_uses_which_vectors_show_one_product():
    """Two products whose photos differ most along a nuisance direction (lighting, say) and a little
    along the direction that tells them apart: PCA keeps the nuisance, learned whitening the difference."""
    rng = np.random.default_rng(0)
    nuisance = rng.normal(size=(200, 1)) * 5.0
    identity = np.repeat([[-1.0], [1.0]], 100, axis=0)
    data = np.hstack([nuisance, identity, rng.normal(size=(200, 6)) * 0.1]).astype(np.float32)
    labels = ["a"] * 100 + ["b"] * 100
    pca = fit_whitening(data, 1)
    learned = fit_whitening(data, 1, labels)
    assert abs(pca[1][0, 0]) > abs(pca[1][1, 0])  # PCA's one dimension is the nuisance
    assert abs(learned[1][1, 0]) > 10 * abs(learned[1][0, 0])  # learned whitening's is the identity
    # Without two vectors of any product there is nothing to learn from: the PCA.
    assert np.allclose(fit_whitening(data[:2], 1, ["a", "b"])[1], fit_whitening(data[:2], 1)[1])


def test_the_workers_fit_at_once_when_the_catalogue_outgrew_its_whitening(make_product, settings, monkeypatch):
    """A long import put the fit off while images were pending (FIT_MAX_POSTPONED times FIT_DELAY:
    half an hour), all the while searching with a whitening learned from a catalogue a fraction of
    the size. Once the catalogue is twice what a small whitening learned from, the fit is not put off."""
    from types import SimpleNamespace

    from django.core.cache import cache

    from visual_search import queue, tasks
    from visual_search.whitening import outgrown

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": "pca", "WHITENING_MIN_VECTORS": 12,
                              "WHITENING_DIMS": 16, "WHITENING_AUGMENT": 1}
    with visual_search.pause_indexing(reindex_on_exit=False):
        for name in NAMES[:3]:
            make_product(name, catalogue_image(name))
    reindex(Product, asynchronous=False)
    assert Whitening.objects.get().trained_on == 3
    with visual_search.pause_indexing(reindex_on_exit=False):
        new = [str(make_product(name, catalogue_image(name)).pk) for name in NAMES[3:]]
    cache.delete(queue.FIT_QUEUED_KEY)
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append((name, args)))
    monkeypatch.setattr(tasks, "current_app", SimpleNamespace(conf=SimpleNamespace(task_always_eager=False)))
    tasks.embed_objects.run("testapp.product", "image", new[:2])
    ImageEmbedding.objects.filter(object_id__in=new[2:]).update(status="pending")  # the import goes on
    assert not outgrown()  # 5 ready: due (WHITENING_REFIT_GROWTH), not outgrown
    assert tasks.fit_whitening.run() == 0 and sent[-1] == (queue.FIT_WHITENING, (1,))  # put off, as before
    tasks.embed_objects.run("testapp.product", "image", new[2:3])
    assert outgrown()  # 6 ready, twice 3
    assert tasks.fit_whitening.run(postponed=1) == 1  # not put off
    assert Whitening.objects.get().trained_on == 6 and not outgrown()
