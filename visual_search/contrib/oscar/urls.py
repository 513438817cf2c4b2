"""The search-by-photo page in Oscar's layout, in place of ``visual_search.urls``::

    path("visual-search/", include("visual_search.contrib.oscar.urls")),

Same namespace and name (``visual_search_pages:search``), so the widget posts here with JavaScript off.
"""

from django.urls import path

from .views import OscarSearchByPhotoView

app_name = "visual_search_pages"

urlpatterns = [
    path("", OscarSearchByPhotoView.as_view(), name="search"),
]
