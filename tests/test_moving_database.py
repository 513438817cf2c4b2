"""A shop moves or restores its database with ``dumpdata`` / ``loaddata`` (docs/deployment.md,
"Moving or restoring the database"): the index comes back searchable at once, nothing is computed
again, and rows of objects that did not come back are cleaned up."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.management import call_command

import visual_search
from visual_search import duplicates
from visual_search.admin_mixins import annotate_status, status_of
from visual_search.models import DuplicateDismissal, ImageEmbedding, Whitening
from visual_search.reindex import reindex
from visual_search.tasks import sweep
from tests.conftest import catalogue_image, photos
from tests.testapp.models import Gadget, Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Lemon", "Banana", "Kiwi", "Lime", "Red-Delicious", "Oatly-Oat-Milk"]
MOVE = {"natural_foreign": True, "natural_primary": True, "exclude": ["contenttypes", "auth.Permission"]}


@pytest.fixture
def catalogue(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": "pca", "WHITENING_MIN_VECTORS": 12, "WHITENING_DIMS": 8}
    with visual_search.pause_indexing(reindex_on_exit=False):
        for name in NAMES:
            make_product(name, catalogue_image(name))
            for k, path in enumerate(photos()[name][:1]):
                make_product(f"{name} photo {k}", path)
    reindex(Product, asynchronous=False)
    assert Whitening.objects.exists()
    return list(Product.objects.all())


def results(query: bytes) -> list[tuple[str, float]]:
    return [(r.object.name, round(r.score, 5)) for r in visual_search.search_by_image(query, Product, limit=5)]


def restore(tmp_path, **dump) -> None:
    """Dump, empty the database (new content type ids), load the dump back."""
    fixture = tmp_path / "dump.json"
    call_command("dumpdata", *dump.pop("labels", []), output=str(fixture), verbosity=0, **dump)
    call_command("flush", interactive=False, verbosity=0)
    ContentType.objects.clear_cache()
    # A new database numbers the content types its own way: not as the old one did.
    kinds = list(ContentType.objects.order_by("pk").values_list("app_label", "model"))
    Permission.objects.all().delete()
    ContentType.objects.all().delete()
    ContentType.objects.create(app_label="elsewhere", model="first")
    for app_label, model in reversed(kinds):
        ContentType.objects.create(app_label=app_label, model=model)
    ContentType.objects.clear_cache()
    return fixture


def test_a_whole_project_dump_restores_a_searchable_index_without_recomputing(catalogue, tmp_path, embed_calls):
    query = photos()["Lemon"][3].read_bytes()
    before = results(query)
    fixture = restore(tmp_path, **MOVE)
    embedded = len(embed_calls)  # the query's
    call_command("loaddata", str(fixture), verbosity=0)
    assert sweep(older_than=0) == 0 and ImageEmbedding.objects.count() == len(catalogue)
    assert len(embed_calls) == embedded  # loaddata's saves are raw: nothing queued, nothing computed
    assert results(query) == before
    assert ImageEmbedding.objects.filter(status="ready").count() == len(catalogue)
    # The admin's status column reads every product "Ready".
    assert {status_of(p) for p in annotate_status(Product.objects.all())} == {"ready"}


def test_the_index_restored_without_its_products_is_removed_by_the_sweep(catalogue, tmp_path):
    """``dumpdata visual_search`` loaded into a database without those products (a restore of the
    index alone, products deleted in SQL): the rows of objects that do not exist stayed for ever,
    counted in no model's objects, searched, and learned from by the whitening."""
    kept = Product.objects.get(name="Lemon")
    fixture = restore(tmp_path, labels=["visual_search"], natural_foreign=True)
    call_command("loaddata", str(fixture), verbosity=0)
    assert ImageEmbedding.objects.count() == len(catalogue)
    Product.objects.bulk_create([Product(pk=kept.pk, name="Lemon", image=kept.image.name)])
    assert sweep(older_than=0) == 0
    assert list(ImageEmbedding.objects.values_list("object_id", flat=True)) == [str(kept.pk)]


def test_reindex_removes_the_rows_of_objects_that_do_not_exist(catalogue):
    Product.objects.filter(name__contains="photo")._raw_delete("default")  # no signal, as raw SQL
    assert ImageEmbedding.objects.count() == len(catalogue)
    counts = reindex(Product, asynchronous=False)
    assert counts["removed"] == len(NAMES)
    assert ImageEmbedding.objects.count() == len(NAMES)


def test_orphaned_rows_of_uuid_keys_are_found_by_their_key(db, settings):
    """A UUID key is stored as 32 hex digits on SQLite, with dashes in a row's object id."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [{"model": "testapp.Gadget", "image_field": "photo"}]}
    kept, gone = Gadget(name="Kept"), Gadget(name="Gone")
    for gadget, name in ((kept, "Lemon"), (gone, "Lime")):
        gadget.photo.save(f"{name}.jpg", ContentFile(catalogue_image(name).read_bytes()))
    Gadget.objects.filter(pk=gone.pk)._raw_delete("default")
    assert sweep(older_than=0) == 0
    assert list(ImageEmbedding.objects.values_list("object_id", flat=True)) == [str(kept.pk)]


def test_the_active_model_version_comes_back_with_its_vectors(catalogue, trained, tmp_path, embed_calls):
    """A trained version's weights stay in the default storage (copied with the media); its row, its
    vectors and the retired version's come back in the dump, and searches use it at once."""
    from visual_search.models import ModelVersion
    from visual_search.versions import activate, forget_serving_version

    activate(trained(), force=True)
    query = photos()["Kiwi"][3].read_bytes()
    before = results(query)
    fixture = restore(tmp_path, **MOVE)
    forget_serving_version()  # a new server's process
    embedded = len(embed_calls)
    call_command("loaddata", str(fixture), verbosity=0)
    assert ModelVersion.objects.get().status == "active"
    assert sweep(older_than=0) == 0 and len(embed_calls) == embedded
    assert results(query) == before


def test_an_index_restored_where_products_have_other_keys_is_taken_out_of_search(catalogue, tmp_path, monkeypatch):
    """``dumpdata visual_search`` loaded where the products came back under other keys: searches
    answered with the wrong products (a lemon's photo found the juice) until each image was
    computed again, hours for a large catalogue. The sweep takes such rows out of search at once."""
    import visual_search.tasks

    query = photos()["Lemon"][3].read_bytes()
    before = results(query)
    fixture = restore(tmp_path, labels=["visual_search"], natural_foreign=True)
    keys = [p.pk for p in catalogue]
    Product.objects.bulk_create([Product(pk=pk, name=p.name, image=p.image.name) for pk, p in zip(reversed(keys), catalogue)])
    call_command("loaddata", str(fixture), verbosity=0)
    assert results(query) != before  # the rows' keys name other products now
    queued = []
    monkeypatch.setattr(visual_search.tasks, "enqueue", lambda label, field, pks, *a, **k: queued.extend(pks) or len(pks))
    sweep(older_than=0)  # the work is queued (a worker will compute it)...
    assert sorted(queued, key=int) == sorted(map(str, keys), key=int)
    assert not ImageEmbedding.objects.filter(status="ready").exists()  # ...and no wrong product is served meanwhile
    monkeypatch.undo()
    sweep(older_than=0)
    assert results(query) == before


def test_the_index_restored_onto_a_rebuilt_one_replaces_its_rows(catalogue, tmp_path, embed_calls):
    """A shop restoring its index (``dumpdata visual_search --natural-foreign --natural-primary``)
    onto one indexed again meanwhile (other row ids): loaddata failed with "UNIQUE constraint failed:
    visual_search_imageembedding.content_type_id, ... fingerprint", and on the whitening. The rows
    are matched by their image and fingerprint, and replaced."""
    query = photos()["Lemon"][3].read_bytes()
    before = results(query)
    first, second = ImageEmbedding.objects.order_by("pk")[:2]
    ImageEmbedding.objects.filter(pk=first.pk).update(duplicate_of=second, duplicate_score=0.99)  # a row named later
    fixture = tmp_path / "index.json"
    call_command("dumpdata", "visual_search", natural_foreign=True, natural_primary=True, output=str(fixture), verbosity=0)
    assert '"pk"' not in fixture.read_text()
    ImageEmbedding.objects.all().delete()
    Whitening.objects.all().delete()
    reindex(Product, asynchronous=False)  # the same images, under new row ids
    ImageEmbedding.objects.update(vector=None, status="failed")  # and say the new ones went wrong
    embedded = len(embed_calls)
    call_command("loaddata", str(fixture), verbosity=0)
    assert ImageEmbedding.objects.filter(status="ready").count() == len(catalogue) == ImageEmbedding.objects.count()
    assert Whitening.objects.count() == 1
    restored = ImageEmbedding.objects.get(object_id=first.object_id, field_name="image")
    assert restored.duplicate_of.object_id == second.object_id and restored.duplicate_score == 0.99
    assert results(query) == before and len(embed_calls) == embedded + 1  # the query's alone


def test_a_dismissed_duplicate_warning_stays_dismissed_in_a_database_with_other_content_type_ids(make_product, tmp_path, settings):
    """Staff dismissed a possible duplicate, then the shop moved its database: the dismissal named
    the images by content type id, which the new database numbers its own way, so the warning came
    back at the next check (and where the old id was another model's, it could hide that one's)."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "DUPLICATE_THRESHOLD": 0.999}
    original = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    copy = make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))
    row = ImageEmbedding.objects.for_object(copy).get()
    duplicates.dismiss(row, row.duplicate_of)
    old_id = ContentType.objects.get_for_model(Product).pk
    fixture = restore(tmp_path, **MOVE)
    call_command("loaddata", str(fixture), verbosity=0)
    assert ContentType.objects.get_for_model(Product).pk != old_id
    assert DuplicateDismissal.objects.count() == 1
    duplicates.detect(ImageEmbedding.objects.all())  # as a reindex or a new photo checks them again
    assert not ImageEmbedding.objects.filter(duplicate_of__isnull=False).exists()
    assert duplicates.find_pairs() == []
    (pair,) = duplicates.find_pairs(include_dismissed=True)
    assert pair.dismissed and {pair.first.object_id, pair.second.object_id} == {str(original.pk), str(copy.pk)}


def test_dismissals_restored_onto_a_database_with_its_own_are_matched_by_their_images(make_product, tmp_path, settings):
    """``dumpdata visual_search --natural-foreign --natural-primary`` restored onto a database whose
    staff dismissed warnings too: the dump's dismissals kept their row ids, so one overwrote the
    other pair that had its id there (that warning came back), and one of a pair dismissed there
    again under another id failed the load ("UNIQUE constraint failed"). They are matched by pair."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "DUPLICATE_THRESHOLD": 0.999}
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    row = ImageEmbedding.objects.for_object(make_product("Pink Lady (copy)", catalogue_image("Pink-Lady"))).get()
    duplicates.dismiss(row, row.duplicate_of)
    pk, first, second = DuplicateDismissal.objects.values_list("pk", "first", "second").get()
    fixture = tmp_path / "index.json"
    call_command("dumpdata", "visual_search", natural_foreign=True, natural_primary=True, output=str(fixture), verbosity=0)
    DuplicateDismissal.objects.all().delete()
    DuplicateDismissal.objects.create(pk=pk, first="a", second="b")  # its id, another pair
    DuplicateDismissal.objects.create(pk=pk + 10, first=first, second=second)  # the pair again
    call_command("loaddata", str(fixture), verbosity=0)
    assert set(DuplicateDismissal.objects.values_list("pk", "first", "second")) == {(pk, "a", "b"), (pk + 10, first, second)}
