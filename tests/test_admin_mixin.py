"""VisualSearchAdminMixin on a shop's own ModelAdmin: column, filter, reindex and requeue."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import RequestFactory

from visual_search.admin_mixins import VisualSearchAdminMixin, annotate_status, status_of
from visual_search.models import ImageEmbedding
from tests.conftest import catalogue_image, serve_admin_site
from tests.testapp.models import Product, ProductImage

pytestmark = pytest.mark.django_db(transaction=True)


class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["name", "category"]
    list_filter = ["category"]
    actions = []


@pytest.fixture
def site():
    site = admin.AdminSite(name="shopadmin")
    site.register(Product, ProductAdmin)
    return site


@pytest.fixture
def model_admin(site):
    return site._registry[Product]


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def shop(make_product):
    good = make_product("Pink Lady", catalogue_image("Pink-Lady"))
    bad = make_product("Broken", b"this is not a jpeg")
    bare = Product.objects.create(name="No photo")
    return good, bad, bare


def request_for(user, method="get", path="/", data=None):
    request = getattr(RequestFactory(), method)(path, data or {})
    request.user = user
    request.session = {}
    from django.contrib.messages.storage.fallback import FallbackStorage

    request._messages = FallbackStorage(request)
    return request


def test_columns_filters_and_actions_are_added_to_the_shops_own(model_admin, staff):
    request = request_for(staff)
    assert model_admin.get_list_display(request) == ["name", "category", "visual_search_status"]
    filters = model_admin.get_list_filter(request)
    assert filters[0] == "category" and filters[1].parameter_name == "visual_search"
    actions = model_admin.get_actions(request)
    action = actions["visual_search_reindex"]  # Django 6.1: an Action; before, a (function, name, description) tuple
    assert (action.description if hasattr(action, "description") else action[2]) == "Reindex visual search"
    assert "visual_search_requeue_failed" in actions


def test_status_column_shows_status_and_failure_reason(model_admin, shop):
    good, bad, bare = shop
    rows = {p.pk: p for p in annotate_status(Product.objects.all())}
    assert status_of(rows[good.pk]) == "ready"
    assert status_of(rows[bare.pk]) == "missing"
    assert status_of(rows[bad.pk]) == "failed"
    html = model_admin.visual_search_status(rows[bad.pk])
    assert "Failed:" in html and "not an image" in html
    assert "Ready" in model_admin.visual_search_status(rows[good.pk])


def test_a_failed_gallery_image_shows_on_its_product(shop):
    good = shop[0]
    gallery = ProductImage(product=good)
    gallery.image.save("bad.jpg", ContentFile(b"nope"))
    assert status_of(annotate_status(Product.objects.filter(pk=good.pk)).get()) == "failed"


def test_changelist_with_status_filter(client, site, staff, shop, settings):
    good, bad, bare = shop
    serve_admin_site(settings, site)
    client.force_login(staff)
    page = client.get("/shopadmin/testapp/product/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Index missing, stale and failed images" in html and "Not indexed" in html
    # Styled by the app's stylesheet, not style="" (which a Content-Security-Policy refuses).
    assert "/static/visual_search/admin.css" in html and 'class="button vs-tool-button"' in html and "style=" not in html.split("<body")[1]
    failed = client.get("/shopadmin/testapp/product/?visual_search=failed").content.decode()
    assert "Broken" in failed and "Pink Lady" not in failed
    missing = client.get("/shopadmin/testapp/product/?visual_search=missing").content.decode()
    assert "No photo" in missing and "Broken" not in missing
    # The changelist button: POST only.
    assert client.get("/shopadmin/testapp/product/visual-search-requeue/").status_code == 403
    # A product written without a signal (bulk_create, loaddata): "Not indexed", and the button
    # indexes it too (it answered "0 stale or failed images queued again" to a whole loaddata).
    good_file = ImageEmbedding.objects.for_object(good).get().source_name
    [imported] = Product.objects.bulk_create([Product(name="Imported", image=good_file)])
    response = client.post("/shopadmin/testapp/product/visual-search-requeue/", follow=True)
    assert response.redirect_chain[-1][0] == "/shopadmin/testapp/product/"
    assert "2 images indexed." in response.content.decode()  # no Celery: done in the request
    assert ImageEmbedding.objects.for_object(imported).get().status == "ready"


def test_the_change_page_says_why_its_image_failed_and_what_to_do(client, site, staff, shop, settings):
    good, bad, bare = shop
    serve_admin_site(settings, site)
    client.force_login(staff)
    page = client.get(f"/shopadmin/testapp/product/{bad.pk}/change/").content.decode()
    assert 'class="error"' in page and "Visual search could not index an image of this product: " in page
    assert "not an image" in page and "Replace the image and save" in page
    for fine in (good, bare):
        assert "Visual search could not index" not in client.get(f"/shopadmin/testapp/product/{fine.pk}/change/").content.decode()
    # Replaced and saved: indexed again, and the page says nothing more.
    bad.image.save("fixed.jpg", ContentFile(catalogue_image("Kiwi").read_bytes()))
    assert "Visual search could not index" not in client.get(f"/shopadmin/testapp/product/{bad.pk}/change/").content.decode()


def test_reindex_action_queues_with_force(model_admin, staff, shop, monkeypatch):
    import visual_search.queue

    calls = []
    monkeypatch.setattr(visual_search.queue, "enqueue", lambda label, field, pks, force=False: calls.append((label, field, list(pks), force)) or len(pks))
    good, bad, bare = shop
    gallery = ProductImage.objects.create(product=good, image="gallery/x.jpg")
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.filter(pk__in=[good.pk, bare.pk]))
    assert ("testapp.product", "image", [good.pk], True) in calls
    assert ("testapp.productimage", "image", [gallery.pk], True) in calls
    messages = [str(m) for m in request._messages]
    assert messages == ["2 products: 2 images indexed."]


def test_requeue_action_takes_only_failed_and_stale(model_admin, staff, shop, embed_calls):
    good, bad, bare = shop
    ImageEmbedding.objects.for_object(good).update(fingerprint="old-model")
    request = request_for(staff, "post")
    model_admin.visual_search_requeue_failed(request, Product.objects.all())
    # Done in the request (no Celery), so the message tells what is still wrong: the broken photo.
    assert [str(m) for m in request._messages] == [
        "3 products: 2 stale or failed images indexed again. 1 product still has a failed image: the visual search column says why."
    ]
    assert ImageEmbedding.objects.for_object(good).get().fingerprint != "old-model"


@pytest.mark.parametrize("model_name", ["Product", "Gadget"])  # an integer key, a UUID one (dashes put in)
def test_the_status_and_duplicate_columns_look_each_product_up_by_index(db, model_name):
    """One subquery per product row: each must find the product's images through an index on
    object_id or result_id. Before, SQLite scanned every row of the fingerprint per product, and a
    20,000-product shop's list filtered by status took minutes."""
    from django.db import connection

    from tests.testapp import models as shop_models
    from visual_search.admin_mixins import annotate_duplicates

    if connection.vendor != "sqlite":
        pytest.skip("reads SQLite's query plan")
    model = getattr(shop_models, model_name)
    sql, params = annotate_duplicates(annotate_status(model.objects.all())).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = [row[-1] for row in cursor.fetchall()]
    lookups = [step for step in plan if step.startswith(("SEARCH", "SCAN")) and model._meta.db_table not in step]
    assert lookups, plan
    for step in lookups:
        assert "PRIMARY KEY" in step or "object_id=?" in step or "result_id=?" in step, plan


def test_a_shop_whose_keys_are_uuids_sees_each_object_s_status(settings, client, jpeg_bytes):
    """SQLite stores a UUID as 32 hex digits, the rows as str(uuid): every gadget read "Not indexed"."""
    from django.db import connection

    from tests.conftest import staff_on_site
    from tests.testapp.models import Gadget

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MODELS": [
        *settings.VISUAL_SEARCH["MODELS"], {"model": "testapp.Gadget", "image_field": "photo"}]}
    ready, broken = Gadget(name="Red gadget"), Gadget(name="Broken gadget")
    ready.photo.save("red.jpg", ContentFile(jpeg_bytes()))
    broken.photo.save("broken.jpg", ContentFile(b"not a jpeg"))
    Gadget.objects.create(name="No photo")
    assert ImageEmbedding.objects.for_object(ready).get().status == "ready"
    # The case that failed: SQLite's char(32) (MariaDB 10.7+ has a uuid type, as PostgreSQL).
    assert connection.vendor != "sqlite" or not connection.features.has_native_uuid_field
    ranks = {g.name: status_of(g) for g in annotate_status(Gadget.objects.all())}
    assert ranks == {"Red gadget": "ready", "Broken gadget": "failed", "No photo": "missing"}, ranks

    class GadgetAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
        list_display = ["name"]

    staff = staff_on_site(client, settings, {Gadget: GadgetAdmin})
    page = staff.get("/shopadmin/testapp/gadget/").content.decode()
    assert page.count("Not indexed") == 2 and "Ready" in page and "Failed" in page  # the filter, and "No photo"
    failed = staff.get("/shopadmin/testapp/gadget/?visual_search=failed").content.decode()
    assert "Broken gadget" in failed and "Red gadget" not in failed


def test_without_celery_a_big_selection_is_not_indexed_in_the_request(model_admin, staff, shop, monkeypatch, client, settings, embed_calls):
    """Thousands of images in a staff member's request outlast the web server's timeout: the
    request dies half way. Nothing is started; the message names the command that does it."""
    import visual_search.queue

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 1}
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert [str(m) for m in request._messages] == [
        "Nothing was started: without Celery, the 2 images would be indexed in this request, longer than a web "
        "request may take. Run `manage.py visual_search_reindex --force` (it shows its progress), or set up Celery workers."
    ]
    assert embed_calls == []
    request = request_for(staff, "post")
    ImageEmbedding.objects.update(fingerprint="old-model")
    model_admin.visual_search_requeue_failed(request, Product.objects.all())
    assert "`manage.py visual_search_reindex --only stale,failed`" in str(list(request._messages)[0])
    # The index admin's "Recompute" action too.
    from visual_search.admin import ImageEmbeddingAdmin

    index_admin = ImageEmbeddingAdmin(ImageEmbedding, admin.AdminSite())
    request = request_for(staff, "post")
    index_admin.requeue(request, ImageEmbedding.objects.all())
    assert str(list(request._messages)[0]).startswith("Nothing was started") and embed_calls == []
    # A shop whose web server allows more sets the limit (VISUAL_SEARCH["IN_REQUEST_IMAGES"]).
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 2}
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert "2 images indexed" in str(list(request._messages)[0]) and embed_calls
    embed_calls.clear()
    # With Celery the workers take any number.
    monkeypatch.setattr(visual_search.queue, "use_celery", lambda: True)
    monkeypatch.setattr(visual_search.queue, "send", lambda *args, **kwargs: None)
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert [str(m) for m in request._messages] == ["3 products: 2 images queued for indexing."]


def test_without_celery_a_selection_slower_than_a_request_may_take_is_not_started(model_admin, staff, shop, monkeypatch, settings, embed_calls):
    """On two cores of an AMD EPYC without AVX-512, 70 of the demo's images took 55.6 s in one
    request, past gunicorn's 30-s timeout: the count alone let the request die half way. At the speed
    this process measured its network at, work longer than IN_REQUEST_SECONDS is not started either,
    and the message says how long it would have taken."""
    import visual_search.queue
    from visual_search.serving import get_extractor

    monkeypatch.setattr(visual_search.queue, "UNTIMED_IMAGES", 0)  # the shop's 2 images are timed
    extractor = get_extractor()
    views = len(extractor.spec.views)
    extractor.view_seconds = 30.0  # as if its passes had been this slow: 30 s a view
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert [str(m) for m in request._messages] == [
        f"Nothing was started: without Celery, indexing the 2 images in this request would take about {60 * views} "
        "seconds on this server, longer than a web request may take. Run `manage.py visual_search_reindex --force` "
        "(it shows its progress), or set up Celery workers."
    ]
    assert embed_calls == []
    # A shop whose web server allows longer requests says so; None leaves the count alone to decide.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IN_REQUEST_SECONDS": None}
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    work = [views]  # one pass: the shop's other image is not a picture, and fails before the network
    assert "2 images indexed" in str(list(request._messages)[0]) and embed_calls == work
    # The measure follows the network's passes here: this one is fast enough.
    assert extractor.view_seconds < 30.0
    embed_calls.clear()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IN_REQUEST_SECONDS": 20}
    extractor.view_seconds = 0.05
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert "2 images indexed" in str(list(request._messages)[0]) and embed_calls == work
    # A network that has not run yet in this process is timed on a blank image first: its first pass
    # (setting up) is not counted, the second is.
    embed_calls.clear()
    extractor.view_seconds, extractor._passes = None, 0
    request = request_for(staff, "post")
    model_admin.visual_search_reindex(request, Product.objects.all())
    assert "2 images indexed" in str(list(request._messages)[0])
    assert embed_calls == [views, views, *work] and extractor.view_seconds is not None
