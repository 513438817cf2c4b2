"""What an Oscar shop's staff get: the dashboard page (status, reasons, buttons guarded by
permissions), the menu entry, the status column on Oscar's ProductAdmin, the preset stepping aside."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.test import override_settings

from tests.oscar.conftest import PARENT, Product, ProductImage
from visual_search import registry
from visual_search.contrib.oscar import checks, registration
from visual_search.contrib.oscar.admin import add_visual_search_to_product_admin
from visual_search.models import ImageEmbedding

pytestmark = [pytest.mark.oscar, pytest.mark.django_db(transaction=True)]
STATUS = "/dashboard/visual-search/"


def user(name: str, *, staff: bool = False, perms: tuple[str, ...] = ()) -> User:
    made = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        made.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return made


@pytest.fixture
def broken(catalogue):
    """A gallery image that is not an image: it ends failed, with its reason."""
    image = ProductImage(product=catalogue["Banana"])
    image.original.save("broken.jpg", ContentFile(b"not a jpeg at all"), save=False)
    image.save()
    return image


def test_the_dashboard_page_lists_counts_statuses_and_reasons(catalogue, broken, client):
    client.force_login(user("editor", staff=True, perms=("catalogue.change_product",)))
    html = client.get(STATUS).content.decode()
    assert "oscar/js/oscar/dashboard.js" in html and "<h1>Visual search</h1>" in html  # Oscar's dashboard layout
    assert "catalogue.productimage.original" in html
    counts = html[html.index('id="vs-counts"'):html.index("</table>")]
    assert '<td class="text-success">6</td>' in counts and 'font-weight-bold">1</td>' in counts  # 6 ready, 1 failed
    products = html[html.index('id="vs-products"'):]
    assert products.index("Banana") < products.index("Arla Standard Milk")  # failed first
    assert "vs-status-failed" in products and "The file is not an image we can read" in products
    assert "Oatly Oat Milk" in products and "Not public" in products  # staff see hidden products
    assert "Vanilla" not in products  # variants are shown through their parent
    assert html.count('name="csrfmiddlewaretoken"') >= 2  # the two buttons post with CSRF

    assert 'id="vs-scores"' not in html  # no whitening learned in these settings: nothing to say yet
    from django.contrib.contenttypes.models import ContentType

    from visual_search.models import Whitening
    from visual_search.ranking import CHANCE_CALIBRATION
    from visual_search.serving import current_fingerprint

    Whitening.objects.create(
        result_type=ContentType.objects.get(app_label="catalogue", model="product"), fingerprint=current_fingerprint(),
        dimensions=1, trained_on=6, mean=b"", projection=b"", calibration=CHANCE_CALIBRATION.as_dict(),
    )
    scores = client.get(STATUS).content.decode()
    assert 'id="vs-scores"' in scores and "Not calibrated" in scores and "Add photos like a customer" in scores

    failed = client.get(STATUS, {"status": "failed"}).content.decode()
    listed = failed[failed.index('id="vs-products"'):]
    assert "Banana" in listed and "Granny Smith" not in listed


def test_the_buttons_queue_work_for_staff_who_may_change_products(catalogue, broken, client):
    client.force_login(user("editor", staff=True, perms=("catalogue.change_product",)))
    # A product whose image was never indexed (a fixture, a bulk_create, an import with indexing paused).
    ImageEmbedding.objects.filter(object_id=str(catalogue["Granny-Smith"].images.get().pk)).delete()
    before = list(ImageEmbedding.objects.filter(status="ready").values_list("pk", "updated_at"))

    response = client.post(f"{STATUS}requeue/", follow=True)
    assert response.redirect_chain[-1][0] == STATUS
    page = response.content.decode()
    # The never-indexed image and the failed one; no broker here, so the work ran in the request.
    assert "2 images indexed." in page, page[page.find("alert"):][:300]
    assert "1 product still has a failed image: the list below says why." in page  # the broken one, again
    assert ImageEmbedding.objects.filter(object_id=str(catalogue["Granny-Smith"].images.get().pk), status="ready").exists()
    assert list(ImageEmbedding.objects.filter(pk__in=[pk for pk, _ in before]).values_list("pk", "updated_at")) == before

    response = client.post(f"{STATUS}reindex/", follow=True)
    assert "7 images indexed." in response.content.decode()
    after = dict(ImageEmbedding.objects.filter(status="ready").values_list("pk", "updated_at"))
    assert all(after[pk] > when for pk, when in before)  # every ready image was recomputed


def test_without_celery_the_whole_catalogue_is_not_indexed_in_the_request(catalogue, client, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IN_REQUEST_IMAGES": 3}
    client.force_login(user("editor", staff=True, perms=("catalogue.change_product",)))
    before = dict(ImageEmbedding.objects.values_list("pk", "updated_at"))
    page = client.post(f"{STATUS}reindex/", follow=True).content.decode()
    assert "Nothing was started: without Celery, the 6 images" in page and "manage.py visual_search_reindex" in page
    assert dict(ImageEmbedding.objects.values_list("pk", "updated_at")) == before


def test_others_get_403_and_anonymous_users_the_login_page(catalogue, client):
    client.force_login(user("customer"))
    assert client.get(STATUS).status_code == 403
    assert client.post(f"{STATUS}reindex/").status_code == 403

    client.force_login(user("viewer", staff=True))  # staff, but may not change products
    assert client.get(STATUS).status_code == 200
    assert "Reindex every product image" not in client.get(STATUS).content.decode()
    assert client.post(f"{STATUS}reindex/").status_code == 403
    assert client.post(f"{STATUS}requeue/").status_code == 403

    client.logout()
    response = client.post(f"{STATUS}reindex/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_get_on_a_button_does_nothing(catalogue, client):
    client.force_login(user("editor", staff=True, perms=("catalogue.change_product",)))
    assert client.get(f"{STATUS}reindex/").status_code == 405


def test_the_dashboard_menu_shows_the_page_to_staff(catalogue, client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    html = client.get("/dashboard/").content.decode()
    assert f'href="{STATUS}"' in html and "Visual search" in html


def test_oscars_product_admin_gets_the_status_column_second(catalogue, rf):
    site = admin.AdminSite(name="vs_oscar_test")
    oscar_admin = type(admin.site._registry[Product])
    site.register(Product, oscar_admin)
    model_admin = site._registry[Product]
    assert "visual_search_status" not in model_admin.get_list_display(rf.get("/"))

    new_class = add_visual_search_to_product_admin(site)
    assert issubclass(new_class, oscar_admin) and add_visual_search_to_product_admin(site) is new_class  # idempotent
    request = rf.get("/")
    request.user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    columns = site._registry[Product].get_list_display(request)
    assert columns[:2] == ["get_title", "visual_search_status"] and columns[2:] == list(oscar_admin.list_display[1:])
    assert "visual_search_reindex" in site._registry[Product].get_actions(request)
    statuses = {p.title: p.visual_search_rank for p in site._registry[Product].get_queryset(request)}
    assert statuses[PARENT] == 3 and statuses["Vanilla"] == 3  # the variant's photo counts for its parent, and is indexed


def test_a_variant_in_the_admin_shows_and_reindexes_its_own_photos(catalogue, rf):
    """A variant's photos are stored as its parent's; the admin read "Not indexed" for the variant,
    and its "Reindex visual search" action found no image to index."""
    site = admin.AdminSite(name="vs_oscar_variant")
    site.register(Product, type(admin.site._registry[Product]))
    add_visual_search_to_product_admin(site)
    model_admin = site._registry[Product]
    request = rf.get("/")
    request.user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    vanilla = Product.objects.get(title="Vanilla")
    ImageEmbedding.objects.filter(object_id__in=[str(pk) for pk in vanilla.images.values_list("pk", flat=True)]).update(
        status=ImageEmbedding.Status.FAILED, error="OSError: broken data stream"
    )
    rows = {p.title: p for p in model_admin.get_queryset(request)}
    assert "Failed" in model_admin.visual_search_status(rows["Vanilla"])
    assert "Failed" in model_admin.visual_search_status(rows[PARENT])  # the family's worst image

    request._messages = type("Messages", (), {"add": lambda self, level, text, extra_tags="": said.append(text)})()
    said = []
    model_admin.visual_search_requeue_failed(request, Product.objects.filter(pk=vanilla.pk))
    assert said == ["1 Product: 1 stale or failed image indexed again."]
    assert not ImageEmbedding.objects.filter(status=ImageEmbedding.Status.FAILED).exists()


def test_the_preset_steps_aside_when_the_shop_registers_product_images(settings):
    saved = dict(registry._registered)
    try:
        registry.unregister(ProductImage)
        entry = {"model": "catalogue.ProductImage", "image_field": "original", "result": "product"}
        with override_settings(VISUAL_SEARCH={**settings.VISUAL_SEARCH, "MODELS": [entry]}):
            assert registration.register_product_images() is None
            [mine] = [r for r in registry.get_registrations() if r.label == "catalogue.productimage"]
            assert type(mine) is registry.Registration  # the shop's: variants are results of their own
        assert isinstance(registration.register_product_images(), registration.VariantImageRegistration)
    finally:
        registry._registered.clear()
        registry._registered.update(saved)


def test_a_shop_without_a_visibility_rule_is_warned(settings):
    assert checks.check_visibility() == []
    settings.VISUAL_SEARCH = {key: value for key, value in settings.VISUAL_SEARCH.items() if key != "VISIBILITY"}
    [warning] = checks.check_visibility()
    assert warning.id == "visual_search_oscar.W001" and checks.BROWSABLE in warning.hint
