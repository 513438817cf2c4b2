"""Staff actions need Django permissions: a staff user without them gets 403 (or no action) and nothing runs.

Reindex and requeue need the shop model's "change" permission; train, activate and roll back need
``visual_search.change_modelversion``. Viewing needs only "view".
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User

from tests.conftest import catalogue_image
from tests.test_admin_mixin import ProductAdmin
from visual_search.models import ImageEmbedding, ModelVersion
from visual_search.serving import current_fingerprint
from visual_search.embeddings.spec import settings_fingerprint
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
VERSIONS = "/admin/visual_search/modelversion/"


def viewer(client, *codenames: str) -> User:
    """A signed-in staff user with only these permissions."""
    user = User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_viewing_staff_cannot_train_activate_or_roll_back(client, trained, monkeypatch):
    import visual_search.training

    started = []
    monkeypatch.setattr(visual_search.training, "start_training", lambda **kw: started.append(kw), raising=False)
    version = trained("Shop v1")
    viewer(client, "view_modelversion")
    assert client.get(VERSIONS).status_code == 200  # may look
    assert client.post(f"{VERSIONS}train/").status_code == 403
    assert client.post(f"{VERSIONS}rollback/").status_code == 403
    page = client.get(VERSIONS).content.decode()
    assert "activate_selected" not in page and "Train a new version" not in page  # not offered either
    client.post(VERSIONS, {"action": "activate_selected", "_selected_action": [version.pk]})
    client.post(VERSIONS, {"action": "activate_anyway", "_selected_action": [version.pk]})
    assert started == [] and ModelVersion.objects.get(pk=version.pk).status == "trained"
    assert current_fingerprint() == settings_fingerprint()


def test_viewing_staff_cannot_reindex_or_requeue(client, make_product):
    from django.core.exceptions import PermissionDenied

    from tests.test_admin_mixin import request_for

    site = admin.AdminSite(name="permadmin")
    site.register(Product, ProductAdmin)
    model_admin = site._registry[Product]
    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    before = list(ImageEmbedding.objects.values_list("pk", "updated_at"))
    clerk = viewer(client, "view_product")
    actions = model_admin.get_actions(request_for(clerk))
    assert "visual_search_reindex" not in actions and "visual_search_requeue_failed" not in actions
    with pytest.raises(PermissionDenied):
        model_admin.visual_search_requeue_view(request_for(clerk, "post"))
    assert list(ImageEmbedding.objects.values_list("pk", "updated_at")) == before  # nothing recomputed
    clerk.user_permissions.add(Permission.objects.get(codename="change_product"))
    clerk = User.objects.get(pk=clerk.pk)  # permissions are cached on the instance
    assert "visual_search_reindex" in model_admin.get_actions(request_for(clerk))


def test_staff_with_the_permissions_can(client, trained, make_product):
    version = trained("Shop v1")
    viewer(client, "view_modelversion", "change_modelversion")
    response = client.post(VERSIONS, {"action": "activate_selected", "_selected_action": [version.pk]}, follow=True)
    assert "Searches now use Shop v1" in response.content.decode()
    assert current_fingerprint() == version.fingerprint


def test_the_no_javascript_search_needs_no_csrf_token_so_cached_pages_keep_working(make_product):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    make_product("Pink Lady", catalogue_image("Pink-Lady"))
    customer = Client(enforce_csrf_checks=True)  # a form from a cached page: no token, or another's
    photo = SimpleUploadedFile("p.jpg", catalogue_image("Pink-Lady").read_bytes(), "image/jpeg")
    response = customer.post("/search-by-photo/", {"image": photo, "csrfmiddlewaretoken": "stale"})
    assert response.status_code == 200 and "Pink Lady" in response.content.decode()
