"""A shop that keeps naive local time: ``USE_TZ = False`` with a local ``TIME_ZONE`` (the default of
Django before 5.0; django-oscar shops upgraded from old versions often run so). Every DateTimeField
then holds naive local time, ``timezone.now()`` is naive, and local time goes back an hour at the
autumn daylight-saving change (Europe/Stockholm: 2026-10-25, 03:00 CEST is 02:00 CET again).

The rest of the suite runs under ``USE_TZ = True``; ``tests/settings_naive_tz.py`` runs any of it
naive (``DJANGO_SETTINGS_MODULE=tests.settings_naive_tz``), as docs/installation.md says.
"""

import io

import pytest
from django.core.management import call_command

from visual_search.models import ModelVersion


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
