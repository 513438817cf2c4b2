"""The server-rendered search page: ``path("search-by-photo/", include("visual_search.urls"))``."""

from django.urls import path

from .views import SearchByPhotoView

app_name = "visual_search_pages"

urlpatterns = [
    path("", SearchByPhotoView.as_view(), name="search"),
]
