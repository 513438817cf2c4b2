"""What cannot keep shops apart is refused loudly: a check error first, then at first use."""

from __future__ import annotations

import pytest
from celery import Celery
from django.core.exceptions import ImproperlyConfigured
from django_tenants.utils import schema_context
from tenant_schemas_celery.app import CeleryApp

from visual_search.backends import get_backend
from visual_search.checks import check_project

pytestmark = [pytest.mark.tenants]

FAISS = "visual_search.backends.faiss.FaissBackend"


def ids() -> list[str]:
    return [message.id for message in check_project()]


@pytest.fixture
def faiss(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BACKENDS": {"default": {"BACKEND": FAISS}}}


@pytest.fixture
def celery_app(settings):
    """Work sent to Celery (eagerly: no broker), through the app that ``make`` returns."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    made = []

    def make(cls):
        app = cls("tenants-tests", set_as_current=True)
        app.conf.task_always_eager = True
        made.append(app)
        return app

    yield make
    Celery("default", set_as_current=True)


def test_the_platform_as_documented_passes(settings):
    assert not {"visual_search.E041", "visual_search.E042"} & set(ids())


def test_a_backend_that_keeps_shops_together_is_an_error(faiss):
    assert "visual_search.E041" in ids()


@pytest.mark.django_db
def test_and_is_refused_while_a_shop_is_served(faiss, shops):
    with schema_context("shop_a"), pytest.raises(ImproperlyConfigured, match="NumpyBackend"):
        get_backend()


def test_celery_without_tenant_schemas_celery_is_an_error(celery_app):
    celery_app(Celery)
    assert "visual_search.E042" in ids()


def test_tenant_schemas_celerys_app_passes(celery_app):
    celery_app(CeleryApp)
    assert "visual_search.E042" not in ids()
