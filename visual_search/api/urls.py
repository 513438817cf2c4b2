"""Mount with ``path("api/visual-search/", include("visual_search.api.urls"))``.

Besides the API: ``docs/``, its Swagger UI page, and ``schema/``, its OpenAPI document (see .docs).
"""

from django.urls import path, register_converter

from .docs import DocsView, SchemaView, SwaggerUIAssetView
from .views import SearchView, SimilarView

app_name = "visual_search"


class AnyKeyConverter:
    """A shop's primary key as it is written, whatever it holds: a slash (an SKU "AB-100/2", sent as
    %2F) or any other character, a newline included (Django's ``path`` converter stops at one, and
    the URL fell through to an HTML 404). The view answers the JSON 404 for a key that is no object."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value) -> str:
        return str(value)


register_converter(AnyKeyConverter, "visual_search_key")


class SearchWithoutSlashView(SearchView):
    """``search`` without its slash, answered in place. Django's APPEND_SLASH would answer a POST
    there with a redirect, and HTTP clients (curl -L, requests, fetch) follow a 301 with a GET: the
    photo was lost and the answer was "Method GET not allowed". Not in the schema: one path is
    documented, ``search/``."""

    schema = None


urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("search", SearchWithoutSlashView.as_view()),
    path("products/<visual_search_key:pk>/similar/", SimilarView.as_view(), name="similar"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    path("docs/swagger-ui/<str:name>", SwaggerUIAssetView.as_view(), name="docs-asset"),
]
