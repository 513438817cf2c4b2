"""A multilingual shop's URLs: its pages (and the search page) under ``i18n_patterns``, the API outside."""

from django.conf.urls.i18n import i18n_patterns
from django.http import HttpResponse
from django.urls import include, path
from django.utils.translation import get_language


def language(request):
    return HttpResponse(get_language())


urlpatterns = [
    path("api/visual-search/", include("visual_search.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    *i18n_patterns(
        path("search-by-photo/", include("visual_search.urls")),
        path("language/", language),
        prefix_default_language=False,
    ),
]
