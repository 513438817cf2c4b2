"""A shop that keeps naive local time: ``USE_TZ = False`` with a local ``TIME_ZONE`` (the default of
Django before 5.0; django-oscar shops upgraded from old versions often run so). Every DateTimeField
then holds naive local time, ``timezone.now()`` is naive, and local time goes back an hour at the
autumn daylight-saving change (Europe/Stockholm: 2026-10-25, 03:00 CEST is 02:00 CET again).

The rest of the suite runs under ``USE_TZ = True``; ``tests/settings_naive_tz.py`` runs any of it
naive (``DJANGO_SETTINGS_MODULE=tests.settings_naive_tz``), as docs/installation.md says.
"""

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.utils import timezone

from tests.testapp.models import Product
from visual_search.backends.numpy import NumpyBackend
from visual_search.models import ImageEmbedding, ModelVersion
from visual_search.serving import current_fingerprint

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DIMS = 32


@pytest.fixture
def naive(settings):
    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Stockholm"
    return settings


def test_the_versions_command_lists_versions_in_naive_local_time(naive, db):
    # localtime() refuses a naive datetime: `visual_search_versions list` stopped with
    # "ValueError: localtime() cannot be applied to a naive datetime" once a version existed.
    ModelVersion.objects.create(label="Shop v1", status=ModelVersion.Status.TRAINED)
    out = io.StringIO()
    call_command("visual_search_versions", "list", stdout=out)
    assert "Shop v1" in out.getvalue()


def test_a_training_starts(naive, db, monkeypatch):
    # Its label ("Adapted 2026-12-05 14:03") took localtime() of a naive now(): the admin's "Train"
    # and `visual_search_train --async` stopped with a ValueError, and no version was created.
    from datetime import datetime

    from visual_search import queue
    from visual_search.training.jobs import start_training

    sent = []
    monkeypatch.setattr(queue, "use_celery", lambda: True)
    monkeypatch.setattr(queue, "send", lambda *args, **kwargs: sent.append(args))
    before = datetime.now()
    version = start_training(epochs=1)
    assert sent and version.status == ModelVersion.Status.TRAINING
    assert version.label in {f"Adapted {moment:%Y-%m-%d %H:%M}" for moment in (before, datetime.now())}


def at(monkeypatch, utc: str) -> datetime:
    """Stop the shop's clock at the instant ``utc``: ``timezone.now()`` (what ``auto_now`` stamps)
    is then the naive Stockholm wall time a USE_TZ = False process reads at that instant."""
    wall = datetime.fromisoformat(utc).astimezone(STOCKHOLM).replace(tzinfo=None)
    monkeypatch.setattr(timezone, "now", lambda: wall)
    return wall


def faiss_backend(tmp_path):
    pytest.importorskip("faiss")
    from visual_search.backends.faiss import FaissBackend

    return FaissBackend(PATH=str(tmp_path / "index"))


@pytest.mark.parametrize("make_backend", [lambda tmp_path: NumpyBackend(), faiss_backend], ids=["numpy", "faiss"])
def test_rows_written_in_the_repeated_hour_are_searched(naive, transactional_db, settings, monkeypatch, tmp_path, make_backend):
    # At the autumn change (2026-10-25 in Stockholm) local time goes from 02:59:59 CEST back to
    # 02:00 CET. A row a worker wrote in the second 02:00-03:00 carried an updated_at *earlier* than
    # the newest one the in-process index had seen (the first 02:50): the refresh, which reads the
    # rows written since the newest seen (less COMMIT_SKEW), passed it over, and so did every
    # refresh after it: the product saved then was not found by a photo until a restart. A vector
    # replaced in place then (a new image, same count) was not even looked for.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    ct = ContentType.objects.get_for_model(Product)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((41, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def write(name: str, vector: np.ndarray) -> None:
        ImageEmbedding.objects.update_or_create(
            content_type=ct, object_id=name, field_name="image",
            defaults={"result_type": ct, "result_id": name, "status": "ready", "fingerprint": current_fingerprint(),
                      "dimensions": DIMS, "vector": vector.tobytes()},
        )

    assert at(monkeypatch, "2026-10-25T00:50:00+00:00") == datetime(2026, 10, 25, 2, 50)  # CEST
    for i in range(30):
        write(str(i), vectors[i])
    backend, where = make_backend(tmp_path), {"result_type_id": ct.pk, "fingerprint": current_fingerprint()}
    assert backend.search(vectors[0], limit=1, **where)[0].result_id == "0"

    assert at(monkeypatch, "2026-10-25T01:10:00+00:00") == datetime(2026, 10, 25, 2, 10)  # CET, 20 minutes on
    write("new", vectors[40])
    assert backend.search(vectors[40], limit=1, **where)[0].result_id == "new"
    at(monkeypatch, "2026-10-25T01:20:00+00:00")  # 02:20 CET
    write("7", vectors[39])  # a new photo of product 7: as many rows, the same newest updated_at
    assert backend.search(vectors[39], limit=1, **where)[0].result_id == "7"

    at(monkeypatch, "2026-10-25T02:05:00+00:00")  # 03:05 CET: the clock is past the repeated hour
    write("later", vectors[38])
    assert backend.search(vectors[38], limit=1, **where)[0].result_id == "later"
    assert backend.search(vectors[40], limit=1, **where)[0].result_id == "new"
    assert backend.search(vectors[39], limit=1, **where)[0].result_id == "7"


@pytest.mark.parametrize("use_tz", [False, True], ids=["naive-then-aware", "aware-then-naive"])
def test_a_faiss_index_saved_before_use_tz_was_switched_is_built_again(transactional_db, settings, tmp_path, use_tz):
    # The file keeps the newest updated_at it holds; written before the shop switched USE_TZ (Django
    # 5.0 made True its default) it was naive where the rows were aware, or the other way round:
    # every search with the FAISS backend stopped with "TypeError: can't compare offset-naive and
    # offset-aware datetimes" (with no whitening learned) until visual_search_rebuild_index.
    backend_module = pytest.importorskip("visual_search.backends.faiss")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 0}
    settings.USE_TZ, settings.TIME_ZONE = use_tz, "Europe/Stockholm"
    ct = ContentType.objects.get_for_model(Product)
    vectors = np.random.default_rng(1).standard_normal((20, DIMS)).astype(np.float32)
    for i, vector in enumerate(vectors):
        ImageEmbedding.objects.create(content_type=ct, object_id=str(i), field_name="image", result_type=ct, result_id=str(i),
                                      status="ready", fingerprint=current_fingerprint(), dimensions=DIMS, vector=vector.tobytes())
    where = {"result_type_id": ct.pk, "fingerprint": current_fingerprint()}
    assert backend_module.FaissBackend(PATH=str(tmp_path)).search(vectors[3], limit=1, **where)[0].result_id == "3"
    assert list(tmp_path.glob("*.faiss"))
    settings.USE_TZ = not use_tz
    assert backend_module.FaissBackend(PATH=str(tmp_path)).search(vectors[4], limit=1, **where)[0].result_id == "4"
