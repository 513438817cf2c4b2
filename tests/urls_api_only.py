"""A URLconf with the JSON API but not the search page (tests/test_checks.py: visual_search.W011)."""

from django.urls import include, path

urlpatterns = [path("api/visual-search/", include("visual_search.api.urls"))]
