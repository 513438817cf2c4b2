"""Each shop's URLs (the tenant's schema is chosen by django-tenants' middleware from the domain)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/visual-search/", include("visual_search.api.urls")),
    path("visual-search/", include("visual_search.urls")),
]
