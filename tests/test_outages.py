"""What customers get while a service is down: the database (503 with Retry-After), the cache
(Redis: searches go on without the rate limit and the thumbnail cache), never a 500."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.db.models import QuerySet

from tests.conftest import catalogue_image
from visual_search.api import throttling
from visual_search.api.throttling import SearchRateThrottle

pytestmark = pytest.mark.django_db(transaction=True)
SEARCH = "/api/visual-search/search/"


@pytest.fixture
def shop(make_product):
    return {name: make_product(name, catalogue_image(name)) for name in ("Lime", "Kiwi")}


def photo(name="Lime"):
    return SimpleUploadedFile("p.jpg", catalogue_image(name).read_bytes(), "image/jpeg")


class DownCache:
    """A cache whose server is gone: every call raises, as django-redis does."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

        return fail


def test_the_database_down_answers_503_with_retry_after(client, shop, monkeypatch):
    def down(self):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(QuerySet, "exists", down)
    response = client.post(SEARCH, {"image": photo()})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    assert response["Retry-After"] == "10"


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_database_down_on_the_search_page_says_when_to_try_again(client, shop, monkeypatch, settings, language):
    """The page without the widget's script said "Please try again later." for a 503 that knew
    when (Retry-After 10), and sent no Retry-After; the API and the script both say when."""
    import html

    from django.utils import translation

    def down(self):
        raise OperationalError("server closed the connection unexpectedly")

    settings.LANGUAGE_CODE = language
    monkeypatch.setattr(QuerySet, "exists", down)
    response = client.post("/search-by-photo/", {"image": photo()})
    assert response.status_code == 503 and response["Retry-After"] == "10"
    with translation.override(language):
        expected = translation.ngettext(
            "Search by photo is not available right now. Please try again in %(seconds)d second.",
            "Search by photo is not available right now. Please try again in %(seconds)d seconds.", 10) % {"seconds": 10}
    assert (language == "en") == (expected == "Search by photo is not available right now. Please try again in 10 seconds.")
    assert expected in html.unescape(response.content.decode())


def test_the_database_down_for_similar_answers_503_with_retry_after(client, shop, monkeypatch):
    import visual_search.api.views as views

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(views, "_get_object", down)
    response = client.get(f"/api/visual-search/products/{shop['Lime'].pk}/similar/")
    assert response.status_code == 503 and response["Retry-After"] == "10"
    assert response.json() == {"detail": "Search by photo is not available right now; please try again later.", "code": "unavailable"}


def test_the_cache_down_leaves_searches_working(client, shop, monkeypatch, settings, caplog):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "30/min"}
    import visual_search.thumbnails as thumbnails

    monkeypatch.setattr(SearchRateThrottle, "cache", DownCache())
    monkeypatch.setattr(throttling.CACHE_WARNING, "last", float("-inf"))
    monkeypatch.setattr(thumbnails, "cache", DownCache())
    monkeypatch.setattr(thumbnails.CACHE_WARNING, "last", float("-inf"))
    response = client.post(SEARCH, {"image": photo("Kiwi")})
    assert response.status_code == 200 and response.json()["results"][0]["name"] == "Kiwi"
    assert response.json()["results"][0]["image_url"]  # the thumbnail, made without its cache
    assert "rate limit not checked" in caplog.text and "Thumbnail cache unavailable" in caplog.text


@pytest.mark.parametrize("said", ["Thumbnail cache unavailable", "Search rate limit not checked"])
def test_the_cache_down_warns_once_a_minute_not_per_card_or_search(client, shop, monkeypatch, settings, caplog, said):
    """Redis stopped for a moment behind gunicorn: each result card's two cache calls logged a
    warning, 21 for a page of 10 results and as many for every search after it (75 lines for four
    requests), and the rate limit one per search, saying nothing of what to do. One warning a
    minute per process each says it, and what to check."""
    import logging

    import visual_search.thumbnails as thumbnails

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "30/min"}
    monkeypatch.setattr(SearchRateThrottle, "cache", DownCache())
    monkeypatch.setattr(thumbnails, "cache", DownCache())
    for warning in (thumbnails.CACHE_WARNING, throttling.CACHE_WARNING):
        monkeypatch.setattr(warning, "last", float("-inf"))
    caplog.set_level(logging.INFO, logger="visual_search")

    def warnings():
        return [r for r in caplog.records if r.levelno >= logging.WARNING and said in r.getMessage()]

    for _ in range(3):
        assert client.post(SEARCH, {"image": photo("Kiwi")}).status_code == 200
    assert len(warnings()) == 1 and "CACHES" in warnings()[0].getMessage()
    for warning in (thumbnails.CACHE_WARNING, throttling.CACHE_WARNING):
        warning.last -= warning.every  # a minute later
    assert client.post(SEARCH, {"image": photo("Lime")}).status_code == 200
    assert len(warnings()) == 2


def test_an_image_change_whose_row_was_never_marked_is_stale_and_the_sweep_repairs_it(shop, monkeypatch):
    """Under autocommit a product's save commits before its post_save marks the row pending. The
    database gone between the two (the soak's PostgreSQL restart) left a ready row of the old file
    that nothing recomputed: searches matched the product on a photo it no longer shows."""
    import hashlib

    from django.core.files.base import ContentFile

    from visual_search import signals
    from visual_search.models import ImageEmbedding
    from visual_search.reindex import count_pks, select_pks, status_counts
    from visual_search.registry import get_registration
    from visual_search.tasks import sweep

    lime = shop["Lime"]

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(signals, "mark_pending", database_gone)
    with pytest.raises(OperationalError):
        lime.image.save("lime-now-a-kiwi.jpg", ContentFile(catalogue_image("Kiwi").read_bytes()))
    monkeypatch.undo()
    lime.refresh_from_db()
    row = ImageEmbedding.objects.for_object(lime).get()
    assert lime.image.name.endswith(".jpg") and "lime-now-a-kiwi" in lime.image.name  # the save committed...
    assert row.status == "ready" and row.source_name != lime.image.name  # ...its row still describes the old file
    registration = get_registration("testapp.product", "image")
    assert select_pks(registration, ["stale"]) == [lime.pk] and count_pks(only=["stale"]) == 1
    assert {t["model"]: t["stale"] for t in status_counts()}["testapp.product.image"] == 1
    assert select_pks(registration, ["missing", "failed", "pending"]) == []  # nothing else would have found it
    from visual_search.admin_mixins import annotate_status, status_of

    assert status_of(annotate_status(type(lime).objects.filter(pk=lime.pk)).get()) == "stale"  # the admin's column too
    assert status_of(annotate_status(type(lime).objects.exclude(pk=lime.pk)).first()) == "ready"
    sweep()
    assert status_of(annotate_status(type(lime).objects.filter(pk=lime.pk)).get()) == "ready"
    row = ImageEmbedding.objects.for_object(lime).get()
    kiwi = hashlib.sha256(catalogue_image("Kiwi").read_bytes()).hexdigest()
    assert row.status == "ready" and row.source_name == lime.image.name and row.checksum == kiwi
    assert select_pks(registration, ["stale"]) == []


def test_products_saved_without_signals_are_indexed_by_the_sweep(shop):
    """bulk_create (a catalogue import) sends no post_save: no row, nothing queued. The sweep finds them."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.testapp.models import Product
    from visual_search.models import ImageEmbedding
    from visual_search.tasks import sweep

    names = [default_storage.save(f"products/import-{name}.jpg", ContentFile(catalogue_image(name).read_bytes())) for name in ("Banana", "Mango")]
    imported = Product.objects.bulk_create([Product(name=f"Imported {n}", image=name) for n, name in enumerate(names)])
    pks = [p.pk for p in Product.objects.filter(name__startswith="Imported")]
    assert len(imported) == 2 and not ImageEmbedding.objects.filter(object_id__in=[str(pk) for pk in pks]).exists()
    assert sweep() == 2
    rows = ImageEmbedding.objects.filter(object_id__in=[str(pk) for pk in pks])
    assert sorted(rows.values_list("status", flat=True)) == ["ready", "ready"]
    assert sweep() == 0  # nothing left: the second sweep queues nothing


def test_a_backend_that_fails_after_the_commit_never_fails_the_shop_s_save(shop, monkeypatch, caplog):
    """pgvector without its extension (a database user that may not create it): dropping the old
    vectors after the commit raised ImproperlyConfigured from on_commit, so every product save and
    delete raised (a 500 in the admin) after the product's row was written."""
    from django.core.files.base import ContentFile

    from visual_search import indexing
    from visual_search.models import ImageEmbedding

    class Broken:
        def remove(self, ids):
            raise ImproperlyConfigured("The pgvector backend needs the PostgreSQL 'vector' extension")

    monkeypatch.setattr(indexing, "get_backend", lambda: Broken())
    product = shop["Lime"]
    product.image.save("other.jpg", ContentFile(catalogue_image("Pink-Lady").read_bytes()))  # marks, then drops
    assert "could not drop 1 vector of images" in caplog.text
    product.delete()
    assert not ImageEmbedding.objects.for_object(product).exists()


def test_the_broker_down_costs_one_try_not_one_per_batch(db, make_product, settings, monkeypatch, caplog):
    """Redis gone while staff indexed a selection of the catalogue from the admin: every batch of
    ids tried the broker again (three connection attempts each, 0.5 s when refused, the connect
    timeout each when the host is unreachable), so the request hung for minutes and the log had
    a warning per batch. The first failure now settles it: the rest are only marked pending."""
    import kombu.exceptions

    import visual_search
    from visual_search import queue
    from visual_search.models import ImageEmbedding

    with visual_search.pause_indexing(reindex_on_exit=False):
        products = [make_product(f"P{n}", catalogue_image("Lime")) for n in range(40)]
    ImageEmbedding.objects.all().delete()  # never indexed: enqueue makes their pending rows
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True, "BATCH_SIZE": 4}
    tries = []

    def down(name, args=(), **options):
        tries.append(args)
        raise kombu.exceptions.OperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(queue, "send", down)
    monkeypatch.setattr(queue, "MARK_BATCHES", 2)  # several rounds of marking, as 100,000 ids make
    assert queue.enqueue("testapp.product", "image", [p.pk for p in products]) == 0
    assert len(tries) == 1
    assert ImageEmbedding.objects.filter(status="pending").count() == 40  # all of them wait for the sweep
    warnings = [r.getMessage() for r in caplog.records if "Could not queue" in r.getMessage()]
    assert len(warnings) == 1 and "40 ids" in warnings[0] and "is the broker running?" in warnings[0]


def test_a_batch_past_the_soft_time_limit_is_split_not_retried_whole(db, monkeypatch, caplog):
    """A shop's global task_soft_time_limit shorter than one batch on a slow CPU worker: the task
    died with a SoftTimeLimitExceeded traceback, the rows stayed pending, and the sweep queued the
    same batch again to die the same way, for ever. It now goes round in halves, down to one image,
    and one image that alone passes the limit says so and what to do."""
    from celery.exceptions import SoftTimeLimitExceeded

    from visual_search import queue, tasks

    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append(args))

    def too_slow(registration, pks, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks, "index_objects", too_slow)
    outcome = tasks.embed_objects.apply(args=("testapp.product", "image", [1, 2, 3, 4, 5]))
    assert outcome.successful() and outcome.result["pending"] == 5
    assert sent == [("testapp.product", "image", [1, 2], False), ("testapp.product", "image", [3, 4, 5], False)]
    assert "split into 2 tasks" in caplog.text and "BATCH_SIZE" in caplog.text
    sent.clear()
    caplog.clear()
    outcome = tasks.embed_objects.apply(args=("testapp.product", "image", [7], False, "fp"))
    assert outcome.successful() and outcome.result["pending"] == 1 and not sent
    [record] = [r for r in caplog.records if "time limit" in r.getMessage()]
    assert record.levelname == "ERROR" and "task_soft_time_limit" in record.getMessage() and "stays pending" in record.getMessage()


def test_the_soft_time_limit_while_decoding_is_not_a_damaged_image(shop, monkeypatch):
    """The limit struck while Pillow decoded a good photo: the decoder's catch-all took it for a
    broken file, and the row was marked failed "damaged or truncated", for staff to chase."""
    from celery.exceptions import SoftTimeLimitExceeded
    from PIL import ImageFile

    from visual_search import queue, tasks
    from visual_search.models import ImageEmbedding

    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append(args))

    def slow(self, *args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow)
    pks = [product.pk for product in shop.values()]
    outcome = tasks.embed_objects.apply(args=("testapp.product", "image", pks, True))
    assert outcome.successful() and outcome.result["pending"] == 2
    assert not ImageEmbedding.objects.filter(status="failed").exists()
    assert sent == [("testapp.product", "image", pks[:1], True), ("testapp.product", "image", pks[1:], True)]


def test_an_image_alone_past_the_soft_time_limit_is_failed_after_max_attempts(shop, monkeypatch, settings):
    """One image that alone passes the soft time limit stayed pending, and every sweep queued it
    again to time out again, a worker's slot each time, for ever. Its row now counts the unfinished
    attempts; at MAX_EMBED_ATTEMPTS it is failed with a reason staff can act on, the sweep leaves it,
    and a manual reindex tries again."""
    from celery.exceptions import SoftTimeLimitExceeded

    from visual_search import queue, tasks
    from visual_search.models import ImageEmbedding
    from visual_search.reindex import reindex

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_EMBED_ATTEMPTS": 2}
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append(args))
    monkeypatch.setattr(queue, "use_celery", lambda: True)
    slow, other = shop["Lime"], shop["Kiwi"]
    ImageEmbedding.objects.for_object(slow).update(status="pending")
    original = tasks.index_objects

    def too_slow(registration, pks, **kwargs):
        if str(slow.pk) in map(str, pks):
            raise SoftTimeLimitExceeded()
        return original(registration, pks, **kwargs)

    monkeypatch.setattr(tasks, "index_objects", too_slow)
    # A batch that passes the limit is split: no image's fault, nothing counted.
    tasks.embed_objects.apply(args=("testapp.product", "image", [slow.pk, other.pk]))
    assert ImageEmbedding.objects.for_object(slow).get().embed_attempts == 0
    for attempts in (1, 2):  # the sweep queues it alone, and it times out alone
        tasks.embed_objects.apply(args=("testapp.product", "image", [slow.pk]))
        assert ImageEmbedding.objects.for_object(slow).get().embed_attempts == attempts
    sent.clear()
    outcome = tasks.embed_objects.apply(args=("testapp.product", "image", [slow.pk]))
    assert outcome.successful() and outcome.result["failed"] == 1
    row = ImageEmbedding.objects.for_object(slow).get()
    assert row.status == "failed" and row.error.startswith("Took longer than the time limit 2 times")
    assert "visual_search_reindex --only failed" in row.error and not sent
    assert tasks.sweep(older_than=0) == 0  # left alone

    reindex(only=["failed"], asynchronous=True)  # staff raised the limit: by hand, it is tried again
    assert ImageEmbedding.objects.for_object(slow).get().embed_attempts == 0
    assert [args[2] for args in sent] == [[slow.pk]]


def test_a_batch_whose_worker_was_killed_sends_its_unfinished_images_alone(shop, monkeypatch):
    """The hard time limit kills the worker's process mid-batch; the message comes back (acks late)
    and the sweep queues the rows again: the same batch died again each time. An image a task
    started and never finished now goes in a task of its own, and the others are computed."""
    from visual_search import queue, tasks
    from visual_search.models import ImageEmbedding

    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args=(), **options: sent.append(args))
    killer, good = shop["Lime"], shop["Kiwi"]
    ImageEmbedding.objects.update(status="pending", checksum="")
    ImageEmbedding.objects.for_object(killer).update(embed_attempts=1)  # what the killed task left
    outcome = tasks.embed_objects.apply(args=("testapp.product", "image", [killer.pk, good.pk]))
    assert outcome.successful() and outcome.result["embedded"] == 1
    assert sent == [("testapp.product", "image", [killer.pk], False)]
    assert ImageEmbedding.objects.for_object(good).get().status == "ready"
    assert ImageEmbedding.objects.for_object(good).get().embed_attempts == 0
    assert ImageEmbedding.objects.for_object(killer).get().embed_attempts == 1  # not counted: not tried here


def test_a_worker_never_takes_itself_for_dead(settings, monkeypatch):
    """Each worker notes itself alive and sweeps for listed workers whose note lapsed. With a cache
    that keeps nothing (DummyCache) its own note is never found: it must not sweep every 10 seconds."""
    from visual_search import workers

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    queued = []
    monkeypatch.setattr(workers, "_queue_sweep", lambda **kwargs: queued.append(kwargs))
    workers._heartbeat("w1@host")
    assert queued == []


def test_a_listed_worker_whose_note_lapsed_is_swept_for_once(settings, monkeypatch):
    from visual_search import workers

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "heartbeats"}}
    queued = []
    monkeypatch.setattr(workers, "_queue_sweep", lambda **kwargs: queued.append(kwargs))
    workers._heartbeat("a@host")
    workers._heartbeat("b@host")
    assert queued == []
    cache.delete(workers.ALIVE_KEY.format("a@host"))  # a's note lapsed: killed
    workers._heartbeat("b@host")
    workers._heartbeat("c@host")
    assert queued == [{"older_than": workers.HEARTBEAT_TIMEOUT - workers.HEARTBEAT}]


def test_a_sweep_that_cannot_be_queued_says_why_and_what_to_do(monkeypatch, caplog):
    """The sweep for a worker found dead (and on a reconnect) said "Could not queue ... on worker
    start: [Errno 111] Connection refused": neither when, nor that the images wait, nor what to run."""
    from visual_search import queue, workers

    def refused(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(queue, "send", refused)
    with caplog.at_level("WARNING", logger="visual_search"):
        workers._queue_sweep(older_than=workers.HEARTBEAT_TIMEOUT - workers.HEARTBEAT)
    [message] = [record.getMessage() for record in caplog.records]
    assert "on worker start" not in message
    assert "is the broker running?" in message and "visual_search_reindex --async --only pending" in message


@pytest.mark.parametrize("reads, warned", [(["visual_search"], True), (["visual_search", "celery"], False), (["celery"], False)])
def test_a_worker_that_reads_only_the_queue_says_the_sweeps_go_unread(settings, caplog, monkeypatch, reads, warned):
    """With QUEUE set, the sweeps go to Celery's default queue (a backlog in QUEUE must not hold them
    up). A shop whose only worker read QUEUE (as docs/celery.md suggested for the embedding) never
    ran one, and nothing said so."""
    from types import SimpleNamespace

    from visual_search import workers

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "QUEUE": "visual_search"}
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=name) for name in reads]),
                               app=SimpleNamespace(conf=SimpleNamespace(task_default_queue="celery")))
    monkeypatch.setattr(workers, "_queue_sweep", lambda **kwargs: None)
    monkeypatch.setattr(workers, "_resume_builds", lambda: None)
    with caplog.at_level("WARNING", logger="visual_search"):
        workers._sweep_on_start(consumer)  # the worker is ready
    assert ("`-Q visual_search,celery`" in caplog.text) is warned


def test_a_setup_error_is_logged_as_its_message_on_one_line_not_a_traceback_per_search(client, shop, monkeypatch, caplog):
    """The pgvector backend on a database where the extension was not created: every search logged
    "Search by photo failed" and a traceback of fifty lines, the error that says what to do at its
    end. Now one line per search, that error itself."""
    import logging

    from visual_search import search

    def not_set_up(*args, **kwargs):
        raise ImproperlyConfigured("Run `CREATE EXTENSION vector;` as a superuser in database 'shop'.")

    monkeypatch.setattr(search, "search_by_image", not_set_up)
    caplog.set_level(logging.INFO, logger="visual_search")
    response = client.post(SEARCH, {"image": photo()})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    logged = [r for r in caplog.records if r.name == "visual_search" and r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is None
    assert logged[0].getMessage() == (
        "Search by photo is unavailable: Run `CREATE EXTENSION vector;` as a superuser in database 'shop'."
    )


def test_a_setup_error_on_similar_products_is_one_line_too(client, shop, monkeypatch, caplog):
    """The same for the similar endpoint and {% similar_products %} (every product page): each
    logged a traceback per request."""
    import logging

    from visual_search import search
    from visual_search.results import similar_items

    def not_set_up(*args, **kwargs):
        raise ImproperlyConfigured("Run `CREATE EXTENSION vector;` as a superuser in database 'shop'.")

    monkeypatch.setattr(search, "find_similar", not_set_up)
    caplog.set_level(logging.INFO, logger="visual_search")
    response = client.get(f"/api/visual-search/products/{shop['Lime'].pk}/similar/")
    assert response.status_code == 503
    assert similar_items(shop["Lime"]) == []
    logged = [r for r in caplog.records if r.name == "visual_search" and r.levelno >= logging.ERROR]
    assert len(logged) == 2 and all(r.exc_info is None for r in logged)
    assert all(r.getMessage() == "Similar products are unavailable: Run `CREATE EXTENSION vector;` as a superuser in "
               "database 'shop'." for r in logged)
