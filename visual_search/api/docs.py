"""The API's documentation: its OpenAPI schema (``schema/``) and a Swagger UI page (``docs/``).

Both are mounted by :mod:`visual_search.api.urls`, so every shop that includes those URLs has them,
and both describe this app's endpoints only, at the paths the shop mounted them (its other APIs
have their own docs). The page is a plain template of this app: the shop needs no
``drf_spectacular`` in ``INSTALLED_APPS``.

Swagger UI's files come from the drf-spectacular-sidecar package when it is installed, so the page
works with no network: from the shop's static files when ``"drf_spectacular_sidecar"`` is in
``INSTALLED_APPS``, else served by :class:`SwaggerUIAssetView`. Without the package, from
``SPECTACULAR_SETTINGS["SWAGGER_UI_DIST"]`` (drf-spectacular's default: a CDN).
"""

from __future__ import annotations

import importlib.util
import os

from django.apps import apps
from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.templatetags.static import static
from django.urls import get_script_prefix, reverse
from django.views.generic import TemplateView, View
from django.views.static import serve
from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView

from .. import __version__
from ..http import HeadWithoutBody
from .views import VisualSearchAPIView

SIDECAR = "drf_spectacular_sidecar"
# What the page uses, by the name the template gives it.
SWAGGER_UI_FILES = {"css": "swagger-ui.css", "bundle": "swagger-ui-bundle.js", "favicon": "favicon-32x32.png"}
DEFAULT_TITLE = "Visual search API"


class AppEndpoints(EndpointEnumerator):
    """The project's URL patterns that reach this app's API views, and no others."""

    def should_include_endpoint(self, path, callback, *args, **kwargs) -> bool:
        view = getattr(callback, "cls", None)
        return isinstance(view, type) and issubclass(view, VisualSearchAPIView) and super().should_include_endpoint(path, callback, *args, **kwargs)


class AppSchemaGenerator(SchemaGenerator):
    endpoint_inspector_cls = AppEndpoints


class SchemaView(HeadWithoutBody, SpectacularAPIView):
    """The OpenAPI 3 document of this app's API.

    JSON as ``application/json`` comes first, so a browser shows it instead of downloading a file;
    ``?format=yaml`` or ``Accept: application/vnd.oai.openapi`` get YAML, as from drf-spectacular's
    own view.
    """

    generator_class = AppSchemaGenerator
    renderer_classes = (OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2)

    @property
    def custom_settings(self) -> dict:
        # The shop's SPECTACULAR_SETTINGS["TITLE"] when it has one; read per request, not at import.
        # The version is this package's, whose endpoints alone the document describes: it said
        # drf-spectacular's default "0.0.0" (or the shop's VERSION, its own API's). The shop's
        # SPECTACULAR_SETTINGS are left as they are for its own schema.
        overrides = {"VERSION": __version__}
        if not spectacular_settings.TITLE:
            overrides["TITLE"] = DEFAULT_TITLE
        # The paths are the URLconf's; a shop mounted under a prefix (FORCE_SCRIPT_NAME, a proxy's
        # SCRIPT_NAME, uvicorn's --root-path) serves them below it. Without a server saying so,
        # Swagger UI's "Try it out" (and a client generated from the schema) called
        # /api/visual-search/... on the host's root, outside the shop. The shop's own SERVERS stand.
        prefix = get_script_prefix().rstrip("/")
        if prefix and not spectacular_settings.SERVERS:
            overrides["SERVERS"] = [{"url": prefix}]
        return overrides

    @extend_schema(exclude=True)  # not an operation of the API it documents (nor of the shop's schema)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _sidecar_folder() -> str | None:
    """Where the sidecar package keeps Swagger UI's files; None when it is not installed."""
    found = importlib.util.find_spec(SIDECAR)
    if found is None or not found.submodule_search_locations:
        return None
    return os.path.join(found.submodule_search_locations[0], "static", SIDECAR, "swagger-ui-dist")


def swagger_ui_url(name: str, namespace: str) -> str:
    """The URL of one of Swagger UI's files: static, served here, or drf-spectacular's dist (a CDN)."""
    if apps.is_installed(SIDECAR):
        return static(f"{SIDECAR}/swagger-ui-dist/{name}")
    if _sidecar_folder():
        return reverse(f"{namespace}:docs-asset", args=[name])
    return f"{spectacular_settings.SWAGGER_UI_DIST}/{name}"


class DocsView(HeadWithoutBody, TemplateView):
    """Swagger UI over :class:`SchemaView`: read the API, and try it with a photo, in a browser."""

    template_name = "visual_search/api_docs.html"

    def get_context_data(self, **kwargs):
        namespace = self.request.resolver_match.namespace
        return super().get_context_data(
            title=spectacular_settings.TITLE or DEFAULT_TITLE,
            schema_url=reverse(f"{namespace}:schema"),
            csrf_header=settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-"),
            assets={use: swagger_ui_url(name, namespace) for use, name in SWAGGER_UI_FILES.items()},
            **kwargs,
        )


class SwaggerUIAssetView(HeadWithoutBody, View):
    """Swagger UI's files from the installed sidecar package, for shops that do not list it in
    ``INSTALLED_APPS`` (and so have no static copy). Cached by browsers for a day."""

    def get(self, request, name: str):
        folder = _sidecar_folder()
        if folder is None or name not in SWAGGER_UI_FILES.values():
            raise Http404("Not a Swagger UI file.")
        response = serve(request, name, document_root=folder)
        if response.streaming:  # not a 304
            response = _in_memory(response)
        response["Cache-Control"] = "public, max-age=86400"
        return response


def _in_memory(streamed: FileResponse) -> HttpResponse:
    """``streamed``'s file as a plain response, its headers kept. A FileResponse streams with a
    synchronous iterator, which Django under ASGI (uvicorn, daphne) warns about on every request
    ("StreamingHttpResponse must consume synchronous iterators"); these files are 1.5 MB at most."""
    try:
        return HttpResponse(b"".join(streamed.streaming_content), status=streamed.status_code, headers=streamed.headers)
    finally:
        streamed.close()  # the file
