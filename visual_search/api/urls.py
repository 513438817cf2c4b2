"""Mount with ``path("api/visual-search/", include("visual_search.api.urls"))``."""

from django.urls import path

from .views import SearchView, SimilarView

app_name = "visual_search"

urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("products/<str:pk>/similar/", SimilarView.as_view(), name="similar"),
]
