"""The server-rendered search page: ``path("visual-search/", include("visual_search.urls"))`` (as the README mounts it)."""

from django.urls import path

from .views import SearchByPhotoView

app_name = "visual_search_pages"

urlpatterns = [
    path("", SearchByPhotoView.as_view(), name="search"),
]
