"""The API's docs page and schema, served by the app's own URLconf: readable in a browser, offline."""

from __future__ import annotations

import json
from decimal import Decimal

import jsonschema
import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from drf_spectacular.settings import spectacular_settings
from rest_framework import serializers

from tests.asgi import asgi_request
from visual_search.api.serializers import SearchResultSerializer
from visual_search.results import ResultAdapter

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def client():
    return Client()


def test_the_docs_page_is_html_that_points_at_the_schema(client):
    response = client.get("/api/visual-search/docs/", **BROWSER)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert reverse("visual_search:docs") == "/api/visual-search/docs/"
    assert 'href="/api/visual-search/schema/"' in page and 'data-schema-url="/api/visual-search/schema/"' in page
    assert '<script src="/static/visual_search/api_docs.js">' in page


def test_the_docs_page_has_no_inline_script_or_style(client):
    """A shop's Content-Security-Policy without 'unsafe-inline' (the demo's) lets it run: Swagger UI
    starts from a static file that reads the schema URL and the CSRF header from data attributes."""
    import re

    from django.contrib.staticfiles import finders

    page = client.get("/api/visual-search/docs/", **BROWSER).content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "<style" not in page and "style=" not in page
    assert 'data-csrf-header="X-CSRFTOKEN"' in page and re.search(r'data-csrf-token="[A-Za-z0-9]{32,}"', page)
    script = open(finders.find("visual_search/api_docs.js")).read()
    assert "SwaggerUIBundle" in script and "data.schemaUrl" in script and "data.csrfHeader" in script


def test_the_docs_page_loads_nothing_from_another_host(client):
    """The sidecar package is installed (requirements.txt): every asset is served by the shop."""
    page = client.get("/api/visual-search/docs/").content.decode()
    assert "http://" not in page and "https://" not in page
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"):
        url = f"/api/visual-search/docs/swagger-ui/{asset}"
        assert url in page
        response = client.get(url)
        assert response.status_code == 200 and response.content
    assert client.get("/api/visual-search/docs/swagger-ui/settings.py").status_code == 404


def test_with_the_sidecar_app_installed_the_assets_are_static_files(client, settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "drf_spectacular_sidecar"]
    page = client.get("/api/visual-search/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page


def test_a_browser_is_shown_the_schema_of_the_app_api_alone(client):
    response = client.get("/api/visual-search/schema/", **BROWSER)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "Visual search API"
    assert sorted(schema["paths"]) == ["/api/visual-search/products/{id}/similar/", "/api/visual-search/search/"]


def test_the_app_schema_has_the_package_version(client, monkeypatch):
    """It said drf-spectacular's default version, "0.0.0", on the docs page too (Swagger UI shows
    the schema's). The shop's SPECTACULAR_SETTINGS still make its own schema, its version included."""
    import tomllib
    from pathlib import Path

    from drf_spectacular.settings import spectacular_settings

    import visual_search

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert visual_search.__version__ == project["version"]
    info = json.loads(client.get("/api/visual-search/schema/", **BROWSER).content)["info"]
    assert (info["title"], info["version"]) == ("Visual search API", visual_search.__version__)
    monkeypatch.setattr(spectacular_settings, "VERSION", "3.1.0")
    monkeypatch.setattr(spectacular_settings, "TITLE", "Fresh & Local API")
    info = json.loads(client.get("/api/visual-search/schema/", **BROWSER).content)["info"]
    assert (info["title"], info["version"]) == ("Fresh & Local API", visual_search.__version__)
    shop = yaml.safe_load(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi").content)["info"]
    assert (shop["title"], shop["version"]) == ("Fresh & Local API", "3.1.0")


def test_tools_still_get_yaml(client):
    response = client.get("/api/visual-search/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert "/api/visual-search/search/" in yaml.safe_load(response.content)["paths"]
    assert "/api/visual-search/search/" in yaml.safe_load(client.get("/api/visual-search/schema/?format=yaml").content)["paths"]


def test_the_project_schema_url_still_answers_the_openapi_document(client):
    """The project-wide view (tests/urls.py, as the demo's /schema/) is unchanged, and does not
    list the docs' own URLs as API operations."""
    response = client.get("/api/schema/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/vnd.oai.openapi")
    paths = yaml.safe_load(response.content)["paths"]
    assert "/api/visual-search/search/" in paths
    assert not [path for path in paths if path.startswith(("/api/visual-search/schema", "/api/visual-search/docs"))]


@pytest.mark.parametrize("url", ["/api/visual-search/schema/", "/api/schema/"])
def test_the_photo_is_a_file_in_the_schema(client, settings, url):
    """``format: binary``, so that the docs page's "Try it out" offers a file picker and generated
    clients (openapi-python-client, openapi-generator) upload bytes; drf-spectacular's default for
    a FileField, ``format: uri``, made both send a string. The formats named are the shop's."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ALLOWED_FORMATS": ["JPEG", "PNG", "WEBP", "HEIF"]}
    schema = yaml.safe_load(client.get(url, HTTP_ACCEPT="application/vnd.oai.openapi").content)
    body = schema["paths"]["/api/visual-search/search/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    request = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    image = request["properties"]["image"]
    assert (image["type"], image["format"]) == ("string", "binary")
    assert "JPEG, PNG, WebP or HEIC" in image["description"] and "TIFF" not in image["description"]
    assert request["required"] == ["image"]


def test_the_schema_needs_no_rest_framework_settings():
    """Without ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` the operations' schemas were built on DRF's
    own AutoSchema (the class is read when the views are imported, hence a fresh process) and the
    schema answered 500: the docs page said "Failed to load API definition"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django, json; django.setup()\n"
        "from django.test import Client\n"
        "r = Client(raise_request_exception=False).get('/api/visual-search/schema/', HTTP_ACCEPT='application/json')\n"
        "print(r.status_code, sorted(json.loads(r.content)['paths']) if r.status_code == 200 else '')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.plain_drf_settings"}
    run = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "200 ['/api/visual-search/products/{id}/similar/', '/api/visual-search/search/']", run.stderr[-2000:]


def test_the_schema_lists_every_error_code_and_when_to_ask_again(client, settings):
    """A client generated from the schema had "Error" under each status and no list of codes (the
    Error's own said "e.g." five of them), no Retry-After on 429 and 503, no 411, and "over
    MAX_UPLOAD_BYTES" where an app developer needs the number. Every code of the docs' table is in it."""
    import re
    from pathlib import Path

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_UPLOAD_BYTES": 5 * 1024 * 1024}
    schema = client.get("/api/visual-search/schema/").json()
    search = schema["paths"]["/api/visual-search/search/"]["post"]
    similar = schema["paths"]["/api/visual-search/products/{id}/similar/"]["get"]
    for operation in (search, similar):
        for status, response in operation["responses"].items():
            assert status == "200" or "`" in response["description"], (status, response)
        assert "Accept-Language" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert {"401", "403", "411", "413", "415", "429", "503"} <= set(search["responses"])
    for status in ("429", "503"):
        assert "Retry-After" in search["responses"][status]["headers"]
    assert "Retry-After" in similar["responses"]["409"]["headers"]
    assert "files up to 5 MB" in search["description"]
    table = (Path(__file__).resolve().parent.parent / "docs" / "customers.md").read_text().split("### Errors", 1)[1]
    documented = set(re.findall(r"^\| \d{3}(?: or \d{3})? \| `(\w+)`", table, re.MULTILINE))
    assert len(documented) > 15
    listed = schema["components"]["schemas"]["Error"]["properties"]["code"]["description"]
    assert documented - {"not_indexed"} <= set(re.findall(r"\w+", listed)), documented - set(re.findall(r"\w+", listed))
    assert "`not_indexed`" in similar["responses"]["409"]["description"]


def test_the_docs_show_an_app_developer_a_call_per_operation(client):
    """A developer on the API alone (a mobile app, a headless storefront) finds a curl example for
    each operation the schema has, and what to do with each kind of error."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "customers.md").read_text()
    section = docs.split("### Calling the API from an app", 1)[1].split("\n### ", 1)[0]
    schema = client.get("/api/visual-search/schema/").json()
    for path in schema["paths"]:
        example = path.replace("{id}", "7")
        assert any(line.startswith("curl ") and example in line for line in section.splitlines()), path
    for words in ("filename=", "Accept-Language", "Retry-After", "Cache-Control", "CSRF", "`code`"):
        assert words in section, words


def test_the_schema_offers_heic_only_where_it_can_be_read(client, monkeypatch):
    """Without the [heif] extra a HEIC photo answers 415: the schema listed HEIC among the formats."""
    from visual_search.embeddings import images

    def formats():
        schema = client.get("/api/visual-search/schema/").json()
        search = schema["paths"]["/api/visual-search/search/"]["post"]
        return search["description"] + schema["components"]["schemas"]["SearchRequest"]["properties"]["image"]["description"]

    monkeypatch.setattr(images, "pillow_heif", object())
    assert formats().count("HEIC") == 2
    monkeypatch.setattr(images, "pillow_heif", None)
    assert "HEIC" not in formats() and formats().count("JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF") == 2


def test_the_schema_shows_an_error_body_for_the_errors_an_app_handles(client):
    """Swagger UI showed a body for 400 alone; 413, 415, 429, 503 (search), 404 and 409 (similar) had none."""
    schema = client.get("/api/visual-search/schema/").json()
    wanted = {"/api/visual-search/search/": ("413", "415", "429", "503"), "/api/visual-search/products/{id}/similar/": ("404", "409")}
    for path, statuses in wanted.items():
        responses = next(iter(schema["paths"][path].values()))["responses"]
        for status in statuses:
            examples = responses[status]["content"]["application/json"]["examples"].values()
            assert examples and all(set(example["value"]) >= {"detail", "code"} for example in examples), (path, status)
    # A search refused in a burst (MAX_CONCURRENT_SEARCHES) is 503 too, with its own code.
    search_503 = schema["paths"]["/api/visual-search/search/"]["post"]["responses"]["503"]
    assert {e["value"]["code"] for e in search_503["content"]["application/json"]["examples"].values()} == {"unavailable", "busy"}
    assert "`busy`" in search_503["description"]


def test_the_schema_says_a_damaged_photo_s_reason(client):
    """A damaged or truncated photo answers invalid_image with "reason": "damaged" (the widget shows
    its detail): the Error schema names the field, and the search shows an example of it."""
    schema = client.get("/api/visual-search/schema/").json()
    reason = schema["components"]["schemas"]["Error"]["properties"]["reason"]
    assert "damaged" in str(reason) and "invalid_image" in reason["description"]
    examples = schema["paths"]["/api/visual-search/search/"]["post"]["responses"]["400"]["content"]["application/json"]["examples"]
    assert {"code": "invalid_image", "reason": "damaged"}.items() <= examples["Damaged"]["value"].items()



@pytest.mark.parametrize("mounted", ["FORCE_SCRIPT_NAME", "root_path"])
def test_under_a_path_prefix_the_schema_names_it_as_its_server(settings, mounted):
    """A shop under /shop (FORCE_SCRIPT_NAME, or uvicorn's --root-path behind a proxy): the schema's
    paths are the URLconf's, and with no server Swagger UI's "Try it out" (and a client generated
    from the schema) called /api/visual-search/... on the host's root, outside the shop."""
    root_path = "/shop" if mounted == "root_path" else ""
    if mounted == "FORCE_SCRIPT_NAME":
        settings.FORCE_SCRIPT_NAME = "/shop"
    page = asgi_request("/api/visual-search/docs/", root_path=root_path, headers={"accept": "text/html"}).body.decode()
    assert 'data-schema-url="/shop/api/visual-search/schema/"' in page
    schema = asgi_request("/api/visual-search/schema/", root_path=root_path).json()
    assert schema["servers"] == [{"url": "/shop"}]
    assert "/api/visual-search/search/" in schema["paths"]  # below the server's URL


def test_without_a_prefix_the_schema_names_no_server_and_a_shop_s_own_stand(monkeypatch):
    assert "servers" not in asgi_request("/api/visual-search/schema/").json()
    monkeypatch.setattr(spectacular_settings, "SERVERS", [{"url": "https://api.shop.example"}])  # SPECTACULAR_SETTINGS["SERVERS"]
    assert asgi_request("/api/visual-search/schema/", root_path="/shop").json()["servers"] == [{"url": "https://api.shop.example"}]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_under_asgi_swagger_ui_s_files_are_served_without_django_s_warning(method):
    """uvicorn or daphne: each of the page's Swagger UI files (a FileResponse, a synchronous iterator)
    logged Django's "StreamingHttpResponse must consume synchronous iterators in order to serve them
    asynchronously" on every request."""
    response = asgi_request("/api/visual-search/docs/swagger-ui/swagger-ui.css", method)
    assert response.status == 200 and response.headers["content-type"] == "text/css"
    assert not [w for w in response.warnings if "synchronous iterators" in w], response.warnings
    assert int(response.headers["content-length"]) > 100_000 and response.body == (b"" if method == "HEAD" else response.body)
    if method == "GET":
        assert response.body.startswith(b".swagger-ui") or b"swagger-ui" in response.body[:2000]
    assert "last-modified" in response.headers and response.headers["cache-control"] == "public, max-age=86400"


class PricedAdapter(ResultAdapter):
    """A shop's extras, as the demo's: a Decimal price and a currency, untyped in the schema."""

    def extra(self, obj, request=None):
        return {"price": Decimal("12.90"), "currency": "SEK", "available": obj.in_stock}


class StockResultSerializer(SearchResultSerializer):
    """A typed field of the shop's (API_RESULT_SERIALIZER): required in the schema, so always sent."""

    in_stock = serializers.BooleanField(source="object.in_stock")
    category = serializers.CharField(source="object.category")


def answer_errors(schema: dict, path: str, method: str, response) -> list[str]:
    """How ``response`` departs from what ``schema`` says ``path`` answers with its status: what a
    client generated from the schema (openapi-python-client) would trip on. OpenAPI 3.0's
    ``nullable`` becomes JSON Schema's ``"null"`` type; draft 4 reads its ``exclusiveMaximum: true``."""

    def as_json_schema(node):
        if isinstance(node, dict):
            node = {key: as_json_schema(value) for key, value in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            return node
        return [as_json_schema(item) for item in node] if isinstance(node, list) else node

    documented = schema["paths"][path][method]["responses"].get(str(response.status_code))
    if documented is None:
        return [f"status {response.status_code} is not in the schema"]
    if not response["Content-Type"].startswith("application/json"):
        return [f"Content-Type {response['Content-Type']}"]
    body_schema = {**documented["content"]["application/json"]["schema"], "components": as_json_schema(schema["components"])}
    errors = jsonschema.Draft4Validator(body_schema).iter_errors(response.json())
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


@pytest.mark.django_db(transaction=True)
def test_real_answers_are_what_the_schema_says(client, settings, make_product):
    """Each answer an app meets, search and similar, results with the shop's extras and typed fields,
    and the errors (400, 404, 409, 413, 415, 429), checked against the app's schema. Checked by hand
    with a client generated by openapi-python-client against the demo (2026-12-05); schemathesis
    (test_fuzz.py) sends random uploads, which never reach a 200 with results."""
    from tests.conftest import catalogue_image

    settings.VISUAL_SEARCH = {
        **settings.VISUAL_SEARCH, "API_FILTERS": {"category": "category"}, "SEARCH_THROTTLE_RATE": "8/min", "MAX_UPLOAD_BYTES": 1024 * 1024,
        "RESULT_ADAPTER": f"{__name__}.PricedAdapter", "API_RESULT_SERIALIZER": f"{__name__}.StockResultSerializer",
    }
    lime = make_product("Lime", catalogue_image("Lime"), category="citrus")
    make_product("Lemon", catalogue_image("Lemon"), category="citrus", in_stock=False)
    unindexed = make_product("No photo yet")
    schema = client.get("/api/visual-search/schema/").json()
    search, similar = "/api/visual-search/search/", "/api/visual-search/products/{id}/similar/"

    def post(data: bytes, name="photo.jpg", **fields):
        return client.post(search, {"image": SimpleUploadedFile(name, data), **fields})

    answers = {
        "results": post(catalogue_image("Lime").read_bytes(), limit=2, category="citrus", box="0.1,0.1,0.9,0.9"),
        "invalid_image": post(b"not a photo"),
        "damaged": post(catalogue_image("Lime").read_bytes()[:2000]),
        "invalid_limit": post(catalogue_image("Lime").read_bytes(), limit=500),
        "unsupported_format": post(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "drawing.svg"),
        "file_too_large": post(b"\xff\xd8" + bytes(2 * 1024 * 1024)),
    }
    for _ in range(8):
        answers["throttled"] = post(catalogue_image("Lime").read_bytes())
    results = answers["results"].json()["results"]
    assert {"price", "currency", "available", "in_stock", "category"} <= set(results[0]), results[0]
    assert isinstance(results[0]["price"], float) and isinstance(answers["results"].json()["confident"], bool)
    statuses = {code: response.status_code for code, response in answers.items()}
    assert statuses == {"results": 200, "invalid_image": 400, "damaged": 400, "invalid_limit": 400,
                        "unsupported_format": 415, "file_too_large": 413, "throttled": 429}, statuses
    for code, response in answers.items():
        assert answer_errors(schema, search, "post", response) == [], code
    for key, status in ((lime.pk, 200), (unindexed.pk, 409), (99999, 404)):
        response = client.get(f"/api/visual-search/products/{key}/similar/?limit=3")
        assert response.status_code == status and answer_errors(schema, similar, "get", response) == [], response.content


def test_the_docs_tell_a_generated_client_s_user_what_trips_it():
    """openapi-python-client's functions ask for an AuthenticatedClient (it reads the schema's
    ``security: [..., {}]`` as required), and one with no token fails in httpx; its File has no
    file name unless given one, and a part without one is text (400 required)."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "customers.md").read_text()
    section = " ".join(docs.split("### OpenAPI and the docs page", 1)[1].split("\n### ", 1)[0].split())
    for words in ("AuthenticatedClient", 'Client(base_url="https://shop.example")', 'file_name="banana.jpg"', "400 `required`"):
        assert words in section, words
