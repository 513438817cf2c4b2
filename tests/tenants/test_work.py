"""Indexing, Celery's task functions and the sweep do each shop's work in that shop's schema."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django_tenants.utils import schema_context
from tenant_schemas_celery.app import CeleryApp

from tests.conftest import catalogue_image
from tests.remote_storage import RemoteStorage
from tests.tenants.conftest import add_product
from tests.tenants.test_cache import plain_cache  # noqa: F401 - a fixture
from tests.tenants.shop.models import Product
from visual_search import indexing, queue, tasks, thumbnails, versions, workers
from visual_search.conf import settings as visual_search_settings
from visual_search.contrib.messaging import background
from visual_search.contrib.messaging.messages import IncomingMessage
from visual_search.models import ImageEmbedding
from visual_search.training import jobs

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]


def ready(schema: str) -> set[str]:
    with schema_context(schema):
        return set(ImageEmbedding.objects.filter(status="ready").values_list("object_id", flat=True))


def unindexed(name: str, photo: str) -> Product:
    """A product saved without signals (an import's bulk_create): no row, nothing queued."""
    product = Product(name=name)
    product.image.save(f"{photo}.jpg", ContentFile(Path(catalogue_image(photo)).read_bytes()), save=False)
    return Product.objects.bulk_create([product])[0]


def test_saving_a_product_indexes_it_in_its_own_shop(shops, django_capture_on_commit_callbacks):
    before = ready("shop_a")
    with schema_context("shop_b"), django_capture_on_commit_callbacks(execute=True):
        product = add_product("shop_b Avocado", "Avocado")
    assert str(product.pk) in ready("shop_b") and ready("shop_a") == before


def test_the_embedding_task_called_in_a_shop_indexes_that_shops_product(shops):
    before = ready("shop_a")
    with schema_context("shop_b"):
        product = unindexed("shop_b Carrots", "Carrots")
        tasks.embed_objects.apply(args=("shop.product", "image", [product.pk])).get()
    assert str(product.pk) in ready("shop_b") and ready("shop_a") == before


def test_tenant_schemas_celery_runs_the_task_in_the_schema_it_was_sent_from(shops, settings):
    """A worker starts each task in the public schema; TenantTask switches to the one in its headers."""
    app = CeleryApp("tenants-tests", set_as_current=True)
    app.conf.task_always_eager = True
    with schema_context("shop_b"):
        product = unindexed("shop_b Cabbage", "Cabbage")
    assert connection.schema_name == "public"
    app.tasks[queue.EMBED_OBJECTS].apply(args=("shop.product", "image", [product.pk]), headers={"_schema_name": "shop_b"}).get()
    assert str(product.pk) in ready("shop_b") and connection.schema_name == "public"


def test_the_sweep_run_in_a_shop_indexes_that_shops_imports(shops):
    before = ready("shop_a")
    with schema_context("shop_a"):
        product = unindexed("shop_a Cucumber", "Cucumber")
    with schema_context("shop_b"):
        tasks.sweep()
    assert str(product.pk) not in ready("shop_a") - before  # shop B's sweep leaves shop A's import alone
    with schema_context("shop_a"):
        assert tasks.sweep() == 1
    assert str(product.pk) in ready("shop_a")


def test_a_worker_starting_queues_the_sweep_for_each_shop(shops, monkeypatch):
    """The worker's main process is in the public schema, where no shop's images are."""
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, *args, **options: sent.append((name, connection.schema_name)))
    workers._queue_sweep()
    assert sent == [(queue.SWEEP, "shop_a"), (queue.SWEEP, "shop_b")] and connection.schema_name == "public"


def test_a_worker_starting_resumes_each_shops_model_switch(shops, monkeypatch, caplog):
    checked = []
    monkeypatch.setattr(workers, "resume_stalled_builds", lambda after: checked.append(connection.schema_name) or versions.resume_stalled_builds(after))
    monkeypatch.setattr(workers.connections, "close_all", lambda: None)  # the test's transaction stays open
    workers._resume_builds()
    assert checked == ["shop_a", "shop_b"] and "could not check" not in caplog.text


def test_a_sweep_sent_from_the_public_schema_says_how_to_send_it_per_shop(shops, caplog):
    """Beat's plain scheduler sends it from the public schema, where this app's tables are not."""
    assert tasks.sweep() == 0
    assert "TenantAwareScheduler" in caplog.text


def test_a_worker_shutting_down_takes_back_the_attempts_its_tasks_counted_in_their_shop(shops, monkeypatch):
    """A deploy stops the worker mid-batch: its main process (public schema) takes the attempts back."""
    with schema_context("shop_b"):
        row = ImageEmbedding.objects.filter(status="ready").first()
        ImageEmbedding.objects.filter(pk=row.pk).update(embed_attempts=1)
        indexing.hold_attempt(indexing.Attempt(here=[], alone=[], given_up=[], counted=[row.pk]), "task-9")
    monkeypatch.setattr(workers.state, "active_requests", [SimpleNamespace(name=queue.EMBED_OBJECTS, id="task-9")])
    workers._take_back_attempts()
    with schema_context("shop_b"):
        assert ImageEmbedding.objects.get(pk=row.pk).embed_attempts == 0


def test_a_message_answered_from_a_thread_is_searched_in_the_shop_its_webhook_came_to(shops, monkeypatch):
    """A thread's own connection starts in the public schema, where no shop's products are."""
    seen, done = [], threading.Event()
    monkeypatch.setattr(background, "handle_message", lambda *args: (seen.append(connection.schema_name), done.set()))
    messenger = SimpleNamespace(name="telegram", settings=SimpleNamespace(BACKGROUND="thread"), path=lambda: "bot.Messenger")
    with schema_context("shop_b"):
        background.run(messenger, IncomingMessage(chat_id="42", kind="photo", file_id="f"))
    assert done.wait(10)
    assert seen == ["shop_b"]


def test_a_training_run_in_a_thread_trains_the_shops_own_version(shops, monkeypatch):
    """Without Celery the admin's training runs in a thread of the web process."""
    seen, done = [], threading.Event()
    monkeypatch.setattr(jobs, "run_training", lambda version_id: (seen.append(connection.schema_name), done.set()))
    monkeypatch.setattr(queue, "use_celery", lambda: False)
    with schema_context("shop_a"):
        jobs.start_training()
    assert done.wait(10)
    assert seen == ["shop_a"]


def test_a_shop_whose_files_are_in_its_own_folder_has_them_indexed(shops, settings, tmp_path, django_capture_on_commit_callbacks):
    """django-tenants' TenantFileSystemStorage finds a file by the schema the reading thread's
    connection is in; the extractor reads the next batch in a thread of its own."""
    settings.MEDIA_ROOT = str(tmp_path)
    settings.MULTITENANT_RELATIVE_MEDIA_ROOT = "%s"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"}}
    with schema_context("shop_b"), django_capture_on_commit_callbacks(execute=True):
        product = add_product("shop_b Kiwi", "Kiwi")
    assert (tmp_path / "shop_b" / product.image.name).exists()
    assert str(product.pk) in ready("shop_b")


class SchemaNotingStorage(RemoteStorage):
    """A bucket that notes the schema each file was saved in (a tenant-aware one keeps them apart by it)."""

    saved_in: list[tuple[str, str]] = []

    def _save(self, name, content):
        self.saved_in.append((name, connection.schema_name))
        return super()._save(name, content)


def test_a_shops_thumbnails_made_while_indexing_are_saved_and_remembered_in_that_shop(shops, settings, plain_cache, django_capture_on_commit_callbacks):
    """The extractor's decode thread names the thumbnail; a thread of the writer's uploads it."""
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.SchemaNotingStorage"}}
    SchemaNotingStorage.saved_in = []
    with schema_context("shop_b"), django_capture_on_commit_callbacks(execute=True):
        product = add_product("shop_b Lemon", "Lemon")
    assert str(product.pk) in ready("shop_b")
    assert {schema for _name, schema in SchemaNotingStorage.saved_in} == {"shop_b"}
    assert len(SchemaNotingStorage.saved_in) == 2  # the photo and its thumbnail
    with schema_context("shop_b"):
        assert thumbnails.remembered([(default_storage, product.image.name)], int(visual_search_settings.THUMBNAIL_SIZE))
