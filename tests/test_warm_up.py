"""visual_search.warm_up(): what a web process loads before its first customer, and that it never
takes the process down."""

import logging

import pytest
from django.db import DatabaseError

import visual_search
from visual_search import search, serving
from tests.conftest import catalogue_image
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_loads_the_network_and_the_index_the_first_search_needs(make_product, monkeypatch):
    make_product("Lime", catalogue_image("Lime"))
    serving._cache.clear()
    took = visual_search.warm_up()
    assert set(took) == {"network", "index"} and all(seconds >= 0 for seconds in took.values())
    assert serving._cache, "the network is loaded"
    # The first search builds no network and still finds the product.
    monkeypatch.setattr(serving, "Extractor", None)  # building one now would fail
    [first] = visual_search.search_by_image(catalogue_image("Lime").read_bytes(), Product, limit=1)
    assert first.object.name == "Lime"


def test_a_part_that_cannot_load_is_logged_not_raised(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise DatabaseError("no such table: visual_search_imageembedding")

    monkeypatch.setattr(search, "search_vector", broken)
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        took = visual_search.warm_up()
    assert "network" in took and "index" not in took
    assert "the index could not be loaded now" in caplog.text

    monkeypatch.setattr(serving, "get_extractor", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert visual_search.warm_up() == {}
    assert "the network could not be loaded now" in caplog.text
