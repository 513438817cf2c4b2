from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/visual-search/", include("visual_search.api.urls")),
    path("search-by-photo/", include("visual_search.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
