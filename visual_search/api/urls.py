"""Mount with ``path("api/visual-search/", include("visual_search.api.urls"))``.

Besides the API: ``docs/``, its Swagger UI page, and ``schema/``, its OpenAPI document (see .docs).
"""

from django.urls import path

from .docs import DocsView, SchemaView, SwaggerUIAssetView
from .views import SearchView, SimilarView

app_name = "visual_search"


class SearchWithoutSlashView(SearchView):
    """``search`` without its slash, answered in place. Django's APPEND_SLASH would answer a POST
    there with a redirect, and HTTP clients (curl -L, requests, fetch) follow a 301 with a GET: the
    photo was lost and the answer was "Method GET not allowed". Not in the schema: one path is
    documented, ``search/``."""

    schema = None


urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("search", SearchWithoutSlashView.as_view()),
    # path: a shop's string keys (SKUs) may hold a slash, which a client sends as %2F.
    path("products/<path:pk>/similar/", SimilarView.as_view(), name="similar"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    path("docs/swagger-ui/<str:name>", SwaggerUIAssetView.as_view(), name="docs-asset"),
]
