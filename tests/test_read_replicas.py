"""A shop with a read replica (Django's primary/replica router, docs/deployment.md "Read replicas").

Reads the router sends to a replica may not see the last writes yet: ``lagging`` is a replica that
is a copy of the primary taken at chosen moments (``lagging.catch_up()``), ``mirror`` one that never
lags (Django's ``TEST: {"MIRROR": "default"}``). What visual search decides from what it reads (to
compute, skip, delete or hold rows) must follow the primary; a shop's products may be shown from
the replica.
"""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import RequestFactory

import visual_search
from visual_search.backends import get_backend
from visual_search.indexing import begin_attempt
from visual_search.models import ImageEmbedding, ModelVersion, Whitening
from visual_search.registry import get_registration
from visual_search.reindex import reindex, status_counts
from visual_search.signals import pause_indexing
from visual_search.serving import current_fingerprint
from visual_search.tasks import embed_objects, sweep
from visual_search.versions import activate, rollback
from tests.conftest import catalogue_image
from tests.replicas import Replica
from tests.test_indexing import in_stock_only  # noqa: F401 - a fixture
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)

ROUTERS = ["tests.replicas.PrimaryReplicaRouter"]


@pytest.fixture
def lagging(settings, tmp_path):
    replica = Replica(tmp_path)
    settings.DATABASE_ROUTERS = ROUTERS
    yield replica
    settings.DATABASE_ROUTERS = []
    replica.close()


@pytest.fixture
def mirror(settings, tmp_path):
    replica = Replica(tmp_path, up_to_date=True)
    settings.DATABASE_ROUTERS = ROUTERS
    yield replica
    settings.DATABASE_ROUTERS = []
    replica.close()


def rows(product, **filters):
    """The product's rows as the primary holds them."""
    return ImageEmbedding.objects.using("default").for_object(product).filter(**filters)


def test_the_router_reads_from_a_replica_that_lags(make_product, lagging):
    product = make_product("Lime")
    assert not Product.objects.filter(pk=product.pk).exists()
    lagging.catch_up()
    assert Product.objects.filter(pk=product.pk).exists()


@pytest.fixture(params=["lagging", "mirror"])
def replica(request):
    return request.getfixturevalue(request.param)


def test_a_new_product_is_indexed_and_found_at_once(make_product, replica):
    """The task runs as the save commits, before a lagging replica has the product: it read the
    product from the replica, took it for deleted and dropped its pending row: never indexed until
    the sweep (a worker of a Celery shop reads it a few milliseconds after the commit, as likely)."""
    product = make_product("Lemon", catalogue_image("Lemon"))
    assert list(rows(product).values_list("status", flat=True)) == ["ready"]
    replica.catch_up()
    # The in-process index is read from the replica (searches follow the router): checked again within
    # REFRESH_INTERVAL, as another process's; a lagging replica had it before the product.
    get_backend().expire()
    found = visual_search.search_by_image(catalogue_image("Lemon").read_bytes(), Product)
    assert found[0].object.pk == product.pk


def test_celerys_task_indexes_a_product_the_replica_lacks(make_product, replica):
    with pause_indexing(reindex_on_exit=False):
        product = make_product("Lemon", catalogue_image("Lemon"))
    report = embed_objects.apply(args=("testapp.product", "image", [product.pk])).get()
    assert report["embedded"] == 1 and report["removed"] == 0
    assert list(rows(product).values_list("status", flat=True)) == ["ready"]


def test_a_changed_image_is_computed_again(make_product, replica):
    """The replica still shows the old file: the task compared it with the primary's, took the image
    for changed while embedding, and stored nothing: pending until the sweep."""
    product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    first = rows(product).get().checksum
    replica.catch_up()
    product.image.save("granny.jpg", ContentFile(catalogue_image("Granny-Smith").read_bytes()))
    row = rows(product).get()
    assert row.status == "ready" and row.checksum != first and row.source_name == product.image.name


def test_an_image_put_back_is_computed_again(make_product, replica):
    """Changed, then back to the file it had: the replica still showed the first file's ready row, and
    the save kept the vector of the second file for a product that shows the first."""
    product = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    first = rows(product).get()
    replica.catch_up()
    product.image.save("granny.jpg", ContentFile(catalogue_image("Granny-Smith").read_bytes()))
    product.image.name = first.source_name
    product.save()
    row = rows(product).get()
    assert (row.status, row.source_name, row.checksum) == ("ready", first.source_name, first.checksum)


def test_a_deleted_product_loses_its_rows(make_product, replica):
    product = make_product("Banana", catalogue_image("Banana"))
    replica.catch_up()
    pk = product.pk
    product.delete()
    assert not ImageEmbedding.objects.using("default").filter(object_id=str(pk)).exists()


def test_the_sweep_keeps_the_rows_of_a_product_back_in_search(make_product, in_stock_only, replica):  # noqa: F811
    """Hidden by an update() and shown again: the replica still has it hidden, and the sweep deleted
    the rows of a product customers can see (out of search until computed again)."""
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    Product.objects.filter(pk=lemon.pk).update(in_stock=False)
    replica.catch_up()
    Product.objects.filter(pk=lemon.pk).update(in_stock=True)
    sweep(older_than=0)
    assert list(rows(lemon).values_list("status", flat=True)) == ["ready"]


def test_the_sweep_does_not_hold_an_image_computed_since_the_replicas_copy(make_product, replica, embed_calls):
    """The replica shows a product's new file beside its row of the old one (the change committed
    before its row was marked, or the marking was lost): on the primary the row is computed from the
    new file already. The sweep held it (pending, out of search) and computed it once more."""
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    name = default_storage.save("lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    Product.objects.filter(pk=lemon.pk).update(image=name)  # no signal
    replica.catch_up()
    embed_objects.apply(args=("testapp.product", "image", [lemon.pk]))
    computed = sum(embed_calls)
    sweep(older_than=0)
    assert sum(embed_calls) == computed
    assert list(rows(lemon).values_list("status", "source_name")) == [("ready", name)]


def test_the_sweep_deletes_the_rows_of_a_product_deleted_in_sql(make_product, replica):
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    lime = make_product("Lime", catalogue_image("Lime"))
    with pause_indexing(reindex_on_exit=False):
        Product.objects.filter(pk=lime.pk)._raw_delete("default")
    replica.catch_up()
    sweep(older_than=0)
    assert list(ImageEmbedding.objects.using("default").values_list("object_id", flat=True)) == [str(lemon.pk)]


def test_reindex_and_status_on_the_primarys_rows(make_product, replica):
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    replica.catch_up()
    assert reindex(Product, asynchronous=False, force=True)["embedded"] == 1
    call_command("visual_search_reindex", "--force", stdout=open("/dev/null", "w"))
    assert list(rows(lemon).values_list("status", flat=True)) == ["ready"]
    replica.catch_up()
    assert status_counts()[0]["ready"] == 1


def test_a_model_version_is_activated_and_rolled_back(make_product, trained, replica):
    """The build reads back the vectors it has just stored: from a lagging replica it never saw them,
    gave up after its passes ("images still have no vector ... unreadable") and switched nothing."""
    products = [make_product(name, catalogue_image(name)) for name in ("Lemon", "Lime", "Banana")]
    version = trained()
    replica.catch_up()
    activate(version)
    assert list(ModelVersion.objects.using("default").filter(status="active")) == [version]
    assert ImageEmbedding.objects.using("default").filter(fingerprint=version.fingerprint, status="ready").count() == 3
    replica.catch_up()
    get_backend().expire()
    assert visual_search.search_by_image(catalogue_image("Lime").read_bytes(), Product)[0].object == products[1]
    assert rollback() is None
    assert not ModelVersion.objects.using("default").filter(status="active").exists()


def test_after_a_switch_the_new_version_serves_and_indexes_at_once(make_product, trained, replica):
    """Which version is active was read from the replica: the process that switched went on with the
    old one, and a save right after the switch took the new version for an old one and deleted its
    vector of the image (no longer searchable until the sweep)."""
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    version = trained()
    replica.catch_up()
    activate(version)
    assert current_fingerprint() == version.fingerprint
    lemon.image.save("lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    assert rows(lemon, fingerprint=version.fingerprint, status="ready").exists()
    assert list(ModelVersion.objects.filter(status="active")) == [version]


def test_a_switch_learns_the_new_versions_whitening(make_product, trained, replica, settings):
    """The whitening is fitted on the vectors the build has just stored: a lagging replica had none,
    and the new version served without one (plain cosine, no confident match) until the sweep."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING_MIN_VECTORS": 3}
    for name in ("Lemon", "Lime", "Banana", "Kiwi"):
        make_product(name, catalogue_image(name))
    version = trained()
    replica.catch_up()
    activate(version)
    assert list(Whitening.objects.using("default").filter(fingerprint=version.fingerprint).values_list("trained_on", flat=True)) == [4]


def test_a_task_counts_its_attempt_on_a_row_the_replica_lacks(make_product, replica, settings):
    """Unfinished attempts (a worker killed by the image) are counted on the rows the task reads: a
    lagging replica had no row of a product just saved, nothing was counted, and an image that kills
    every worker was never given up after MAX_EMBED_ATTEMPTS."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_EMBED_ATTEMPTS": 1}
    with pause_indexing(reindex_on_exit=False):
        product = make_product("Lemon", catalogue_image("Lemon"))
    registration = get_registration("testapp.product", "image")
    begin_attempt(registration, [product.pk], None, 1)  # killed: never ended
    assert list(rows(product).values_list("embed_attempts", flat=True)) == [1]
    attempt = begin_attempt(registration, [product.pk], None, 1)
    assert attempt.given_up == [str(product.pk)] and list(rows(product).values_list("status", flat=True)) == ["failed"]


@pytest.mark.urls("tests.test_admin_site")  # the shop's own admin site, with the product's admin
def test_the_admins_reindex_action_and_the_status_command(make_product, replica, client):
    lemon = make_product("Lemon", catalogue_image("Lemon"))
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    replica.catch_up()  # the shop's sessions and users: read where its router says
    lemon.image.save("lime.jpg", ContentFile(catalogue_image("Lime").read_bytes()))
    response = client.post("/staff/testapp/product/", {"action": "visual_search_reindex", "_selected_action": [lemon.pk]}, follow=True)
    assert response.status_code == 200
    assert list(rows(lemon).values_list("status", "source_name")) == [("ready", lemon.image.name)]
    replica.catch_up()
    out = io.StringIO()
    call_command("visual_search_status", stdout=out)
    assert "testapp.product.image" in out.getvalue()
    assert status_counts()[0] == {**status_counts()[0], "objects": 1, "ready": 1, "stale": 0, "missing": 0}


def test_search_and_similar_products_never_show_a_hidden_product(make_product, replica, settings):
    """VISIBILITY is read where the router sends reads (the shop's choice): hidden there, never shown."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.in_stock"}
    made = {name: make_product(name, catalogue_image(name)) for name in ("Lemon", "Lime", "Banana")}
    Product.objects.filter(pk=made["Lime"].pk).update(in_stock=False)
    replica.catch_up()
    get_backend().expire()
    customer = RequestFactory().get("/")
    found = visual_search.search_by_image(catalogue_image("Lime").read_bytes(), Product, request=customer)
    assert "Lime" not in [r.object.name for r in found] and len(found) == 2
    similar = visual_search.find_similar(made["Lemon"], request=customer)
    assert [r.object.name for r in similar] == ["Banana"]
