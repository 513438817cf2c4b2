"""What a process keeps between searches (the serving version, calibrations) is each shop's own."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django_tenants.utils import schema_context

from tests.tenants.shop.models import Product
from visual_search import serving, warm_up
from visual_search.embeddings.spec import settings_fingerprint
from visual_search.models import ModelVersion, Whitening

pytestmark = [pytest.mark.tenants, pytest.mark.django_db]


@pytest.fixture
def remembered(settings):
    """Read at most every minute, as a busy process reads them between two shops' requests."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "REFRESH_INTERVAL": 60}
    serving.forget_serving_version()
    serving.forget_calibrations()
    yield
    serving.forget_serving_version()
    serving.forget_calibrations()


def test_each_shop_searches_with_its_own_active_version(shops, remembered):
    with schema_context("shop_a"):
        ModelVersion.objects.create(label="A's own", status=ModelVersion.Status.ACTIVE, fingerprint="a" * 32)
        assert serving.current_fingerprint() == "a" * 32
    with schema_context("shop_b"):
        assert serving.current_fingerprint() == settings_fingerprint()  # shop B trained none


def test_each_shop_scores_with_its_own_calibration(shops, remembered):
    with schema_context("shop_a"):
        result_type = ContentType.objects.get_for_model(Product)
        Whitening.objects.create(result_type=result_type, fingerprint=settings_fingerprint(), dimensions=1, trained_on=3,
                                 mean=b"", projection=b"", calibration={"temperature": 0.05, "none": 1.0})
        assert serving.calibration(result_type.pk, settings_fingerprint()) is not None
    with schema_context("shop_b"):
        assert serving.calibration(ContentType.objects.get_for_model(Product).pk, settings_fingerprint()) is None


def test_a_web_process_warms_up_the_network_in_the_public_schema(shops, caplog):
    """gunicorn's post_worker_init runs before any request chose a shop: the settings' network loads,
    each shop's vectors load at its first search."""
    took = warm_up()
    assert "network" in took and "could not be loaded" not in caplog.text
