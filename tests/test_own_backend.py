"""A backend of the shop's own, written as docs/backends.md ("Writing a backend") says."""

from collections import defaultdict

import numpy as np
import pytest
from django.core.management import call_command

import visual_search
from tests.conftest import catalogue_image
from tests.testapp.models import Product
from visual_search import whitening
from visual_search.backends.base import BaseBackend, EmptySpace, holding
from visual_search.models import Whitening
from visual_search.ranking import ArraySpace, transform

pytestmark = pytest.mark.django_db(transaction=True)

STORE: dict = defaultdict(dict)  # (result type id, fingerprint) -> {row id: (result id, raw vector)}


class DictBackend(BaseBackend):
    """Raw vectors in a dict; whitened when a space is opened."""

    reset_drops_everything = True

    def add(self, rows):
        self.remove([row.pk for row in rows])
        for row in rows:
            STORE[(row.result_type_id, row.fingerprint)][row.pk] = (row.result_id, row.array)

    def remove(self, ids):
        for bucket in STORE.values():
            for pk in ids:
                bucket.pop(pk, None)

    def reset(self):
        STORE.clear()

    def space(self, result_type_id, fingerprint):
        bucket = STORE.get((result_type_id, fingerprint))
        if not bucket:
            return holding(EmptySpace())
        row = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).first()
        arrays = row.arrays() if row is not None else None
        vectors = transform(np.vstack([vector for _, vector in bucket.values()]), arrays)
        return holding(ArraySpace.of(vectors, [result_id for result_id, _ in bucket.values()], whitening=arrays))


@pytest.fixture
def own_backend(settings):
    STORE.clear()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BACKENDS": {"default": {"BACKEND": "tests.test_own_backend.DictBackend"}}}
    yield STORE
    STORE.clear()


def test_a_backend_keeping_its_own_vectors_still_finds_them_after_the_whitening_is_learned(own_backend, make_product, settings):
    """The default whitening_changed() was reset(): after `visual_search_reindex` learned the
    whitening, the shop's backend held nothing, and every search found nothing, without an error."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 2, "WHITENING_DIMS": 4}
    names = ["Lemon", "Lime", "Mango", "Kiwi", "Banana", "Orange"]
    products = [make_product(name, catalogue_image(name)) for name in names]
    call_command("visual_search_rebuild_index", verbosity=0)
    assert sum(map(len, own_backend.values())) == len(names)

    assert whitening.fit(Product)  # what visual_search_reindex and the sweep run
    assert sum(map(len, own_backend.values())) == len(names)
    found = visual_search.search_by_image(catalogue_image("Mango").read_bytes(), Product, limit=3)
    assert found and found[0].object == products[2]


def test_a_one_model_rebuild_keeps_the_other_models_vectors(own_backend, make_product):
    """`visual_search_rebuild_index --model` on a backend whose reset() drops every model's vectors
    (reset_drops_everything) calls whitening_changed() for that model: it dropped all of them."""
    from django.core.files.base import ContentFile

    from tests.testapp.models import Gadget

    visual_search.register(Gadget, image_field="photo")
    try:
        make_product("Lemon", catalogue_image("Lemon"))
        gadget = Gadget(name="Lime")
        gadget.photo.save("lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
        call_command("visual_search_rebuild_index", verbosity=0)
        before = {key: set(bucket) for key, bucket in own_backend.items()}
        assert len(before) == 2
        call_command("visual_search_rebuild_index", "--model", "testapp.Product", verbosity=0)
        assert {key: set(bucket) for key, bucket in own_backend.items()} == before
    finally:
        visual_search.unregister(Gadget)


@pytest.fixture
def docs_backend(settings):
    """docs/backends.md's DictBackend, word for word, as the module ``docs_dict_backend``."""
    import re
    import sys
    import types
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "backends.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "class DictBackend" in block]
    module = types.ModuleType("docs_dict_backend")
    exec(compile(code, "docs/backends.md", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "BACKENDS": {"default": {"BACKEND": "docs_dict_backend.DictBackend"}}}
    yield module.STORE
    del sys.modules[module.__name__]


def test_the_backend_docs_backends_md_shows_finds_products_before_and_after_the_whitening(docs_backend, make_product, settings):
    # The docs said this file runs their snippet; it ran a copy in other words.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 2, "WHITENING_DIMS": 4}
    names = ["Lemon", "Lime", "Mango", "Kiwi", "Banana", "Orange"]
    products = [make_product(name, catalogue_image(name)) for name in names]
    call_command("visual_search_rebuild_index", verbosity=0)
    assert sum(map(len, docs_backend.values())) == len(names)
    assert whitening.fit(Product)
    found = visual_search.search_by_image(catalogue_image("Mango").read_bytes(), Product, limit=3)
    assert found and found[0].object == products[2]
