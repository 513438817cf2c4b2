"""The JSON API: search by photo, similar objects, every bad input as a clear 4xx, throttle, schema."""

import io

from urllib.parse import quote

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from tests.conftest import catalogue_image, photos
from tests.testapp.models import Product, ProductImage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]

SEARCH = "/api/visual-search/search/"


@pytest.fixture
def shop(make_product):
    made = {}
    for name, category in [
        ("Arla-Standard-Milk", "milk"),
        ("Oatly-Oat-Milk", "milk"),
        ("Granny-Smith", "apple"),
        ("Pink-Lady", "apple"),
        ("Banana", "fruit"),
    ]:
        made[name] = make_product(name.replace("-", " "), catalogue_image(name), category=category)
    return made


def upload(data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def search(client, data=None, **fields):
    if data is not None:
        fields["image"] = upload(data) if isinstance(data, bytes) else data
    return client.post(SEARCH, fields)


def test_own_catalogue_image_comes_first(client, shop):
    response = search(client, catalogue_image("Pink-Lady").read_bytes())
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["id"] == shop["Pink-Lady"].pk
    assert results[0]["name"] == "Pink Lady"
    assert results[0]["url"] == f"http://testserver/products/{shop['Pink-Lady'].pk}/"
    # A small rendition of the product's own image (tests/test_result_cards.py checks what it shows).
    assert results[0]["image_url"].startswith("http://testserver/media/visual_search/thumbnails/")
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert set(results[0]) >= {"id", "name", "url", "image_url", "score"}


def test_search_without_its_trailing_slash_answers_in_place(client, shop, settings):
    """APPEND_SLASH answered a POST to ``search`` with a 301, which HTTP clients follow with a GET:
    the photo was lost and the answer was a 405. The path without its slash searches too, and the
    schema still documents one path (test_api_docs.py)."""
    settings.APPEND_SLASH = True
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.common.CommonMiddleware"]
    response = client.post(SEARCH.rstrip("/"), {"image": upload(catalogue_image("Banana").read_bytes()), "limit": 2})
    assert response.status_code == 200, response.content
    assert [r["id"] for r in response.json()["results"]][:1] == [shop["Banana"].pk]
    assert len(response.json()["results"]) == 2
    assert client.get(SEARCH.rstrip("/")).json()["code"] == "method_not_allowed"


class ShoutingRenderer(JSONRenderer):
    """A project's own default renderer that rewrites keys, as a camelCase renderer does."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        def shout(value):
            if isinstance(value, dict):
                return {key.upper(): shout(item) for key, item in value.items()}
            return [shout(item) for item in value] if isinstance(value, list) else value

        return super().render(shout(data), accepted_media_type, renderer_context)


@pytest.fixture
def project_drf_defaults(monkeypatch):
    """A project's REST_FRAMEWORK defaults, as DRF applies them: to APIView's class attributes, when
    DRF is imported (cookiecutter-django's IsAuthenticated; a key-rewriting renderer)."""
    monkeypatch.setattr(APIView, "permission_classes", [IsAuthenticated])
    monkeypatch.setattr(APIView, "renderer_classes", [ShoutingRenderer])


def test_the_project_s_drf_defaults_do_not_shut_customers_out(client, shop, project_drf_defaults):
    response = search(client, catalogue_image("Banana").read_bytes(), limit=2)
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"results", "confident"}
    assert set(response.json()["results"][0]) >= {"id", "name", "url", "image_url", "score"}
    similar = client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/")
    assert similar.status_code == 200 and "image_url" in similar.json()["results"][0]


def test_api_permission_classes_may_ask_customers_to_sign_in(client, shop, settings, django_user_model):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    refused = search(client, catalogue_image("Banana").read_bytes())
    assert refused.status_code == 403 and refused.json()["code"] == "not_authenticated"
    assert client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/").status_code == 403
    client.force_login(django_user_model.objects.create_user("customer", password="pw"))
    assert search(client, catalogue_image("Banana").read_bytes()).status_code == 200


def test_a_signed_in_customer_s_search_needs_no_csrf_token(shop, django_user_model):
    """A shop's own front end posts with fetch(), which sends the session cookie on its own origin:
    a signed-in customer's search was refused for want of a CSRF token (403), anonymous ones not.
    A search changes nothing; the customer is still recognised."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(django_user_model.objects.create_user("customer", password="pw"))
    response = search(browser, catalogue_image("Banana").read_bytes(), limit=2)
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["id"] == shop["Banana"].pk
    assert browser.post(f"/api/visual-search/products/{shop['Banana'].pk}/similar/").status_code == 405  # GET only, as before


def test_while_every_vector_is_being_recomputed_a_search_is_503_not_an_empty_answer(client, shop, settings):
    """An upgrade that changes the fingerprint leaves nothing to search until the reindex: customers
    read "Nothing looks like that photo. Try another angle", as if it were their photo."""
    from visual_search.models import ImageEmbedding

    from visual_search.backends import get_backend

    ImageEmbedding.objects.update(fingerprint="0.1's")
    get_backend().reset()  # as a new process, or a settings change, finds it
    response = search(client, catalogue_image("Banana").read_bytes())
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    assert "being updated" in response.json()["detail"] and response["Retry-After"] == "60"
    # A shop with nothing indexed at all: an empty answer, as before.
    ImageEmbedding.objects.all().delete()
    response = search(client, catalogue_image("Banana").read_bytes())
    assert response.status_code == 200 and response.json()["results"] == []


def test_limit_and_its_bounds(client, shop):
    photo = catalogue_image("Banana").read_bytes()
    assert len(search(client, photo, limit=2).json()["results"]) == 2
    assert len(search(client, photo).json()["results"]) == 5  # default 12, five products
    for bad in (0, 51, "many"):
        response = search(client, photo, limit=bad)
        assert response.status_code == 400
        # Worded as similar/'s answer (the form's field said "limit: Ensure this value is...").
        assert response.json() == {"detail": "limit must be a whole number from 1 to 50.", "code": "invalid_limit"}
        similar = client.get(f"/api/visual-search/products/{shop['Banana'].pk}/similar/?limit={bad}")
        assert similar.status_code == 400 and similar.json() == response.json()


def test_limit_and_filters_in_the_query_string_count_as_in_the_form(client, shop):
    photo = catalogue_image("Banana").read_bytes()
    assert len(client.post(f"{SEARCH}?limit=2", {"image": upload(photo)}).json()["results"]) == 2
    response = client.post(f"{SEARCH}?limit=0", {"image": upload(photo)})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_limit")
    # The form wins over the query string.
    assert len(client.post(f"{SEARCH}?limit=2", {"image": upload(photo), "limit": 3}).json()["results"]) == 3
    names = {r["name"] for r in client.post(f"{SEARCH}?category=milk", {"image": upload(photo)}).json()["results"]}
    assert names == {"Arla Standard Milk", "Oatly Oat Milk"}


def test_category_filter_keeps_only_that_category(client, shop):
    response = search(client, catalogue_image("Granny-Smith").read_bytes(), category="milk")
    assert response.status_code == 200
    assert {r["name"] for r in response.json()["results"]} == {"Arla Standard Milk", "Oatly Oat Milk"}
    assert search(client, catalogue_image("Granny-Smith").read_bytes(), category="none").json()["results"] == []


def test_filters_not_in_api_filters_are_ignored(client, shop):
    response = search(client, catalogue_image("Granny-Smith").read_bytes(), name="Banana", in_stock="false")
    assert len(response.json()["results"]) == 5


def test_gallery_image_is_the_picture_of_a_product_without_its_own(client, shop, settings):
    bare = Product.objects.create(name="Loose Banana", category="fruit")
    gallery = ProductImage(product=bare)

    gallery.image.save("loose-banana.jpg", ContentFile(photos()["Banana"][0].read_bytes()))
    results = search(client, photos()["Banana"][0].read_bytes()).json()["results"]
    found = next(r for r in results if r["id"] == bare.pk)
    from visual_search.results import images

    assert images([bare])[bare.pk].name.startswith("gallery/loose-banana")  # the picture shown, as a thumbnail
    assert found["image_url"].startswith("http://testserver/media/visual_search/thumbnails/")
    assert found["score"] == pytest.approx(1.0, abs=1e-3)


def test_similar_excludes_itself(client, shop):
    pk = shop["Arla-Standard-Milk"].pk
    response = client.get(f"/api/visual-search/products/{pk}/similar/?limit=3")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert pk not in [r["id"] for r in results]


def test_similar_with_category_filter(client, shop):
    pk = shop["Arla-Standard-Milk"].pk
    results = client.get(f"/api/visual-search/products/{pk}/similar/?category=milk").json()["results"]
    assert [r["name"] for r in results] == ["Oatly Oat Milk"]


def test_similar_to_unknown_product_is_404(client, shop):
    # "AB-100/2": a SKU with a slash (sent as %2F) found no route: Django's HTML 404, not the API's JSON.
    for pk in (999999, "abc", "AB-100/2", "A\nB"):  # a newline: no route at all with Django's path converter
        response = client.get(f"/api/visual-search/products/{quote(str(pk), safe='')}/similar/")
        assert response.status_code == 404
        assert response.json() == {"detail": f"No product with id {pk}.", "code": "not_found"}


def test_similar_to_product_without_embedding_is_409(client, shop):
    product = Product.objects.create(name="No photo yet")
    response = client.get(f"/api/visual-search/products/{product.pk}/similar/")
    assert response.status_code == 409
    body = response.json()
    assert body["results"] == [] and body["code"] == "not_indexed" and "not indexed" in body["detail"]
    assert body["state"] == "missing" and "Retry-After" not in response


def test_similar_409_says_whether_waiting_helps(client, shop):
    """A failed image answers "failed" (waiting changes nothing), a queued one "pending" with Retry-After."""
    from visual_search.models import ImageEmbedding

    broken = Product.objects.create(name="Broken photo")
    broken.image.save("broken.jpg", ContentFile(b"not a JPEG at all" * 50), save=True)
    assert ImageEmbedding.objects.for_result(broken).get().status == ImageEmbedding.Status.FAILED
    response = client.get(f"/api/visual-search/products/{broken.pk}/similar/")
    assert response.status_code == 409 and "Retry-After" not in response
    body = response.json()
    assert body["state"] == "failed" and "could not be indexed" in body["detail"] and "replaces the image" in body["detail"]

    banana = shop["Banana"]
    ImageEmbedding.objects.for_result(banana).update(status=ImageEmbedding.Status.PENDING)
    response = client.get(f"/api/visual-search/products/{banana.pk}/similar/")
    assert response.status_code == 409 and response["Retry-After"] == "10"
    assert response.json()["state"] == "pending" and "try again" in response.json()["detail"]


def test_vectors_of_another_version_are_pending_only_where_the_sweep_runs(client, shop, settings):
    """Made by another model (settings changed, a version rolled back): Celery's sweep recomputes
    them, so "pending"; without Celery nothing does until visual_search_reindex, so "missing",
    without a Retry-After that would have a client poll for ever."""
    from visual_search.models import ImageEmbedding

    banana = shop["Banana"]
    ImageEmbedding.objects.for_result(banana).update(fingerprint="an-older-model")
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": False}
    response = client.get(f"/api/visual-search/products/{banana.pk}/similar/")
    assert response.status_code == 409 and response.json()["state"] == "missing" and "Retry-After" not in response
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    response = client.get(f"/api/visual-search/products/{banana.pk}/similar/")
    assert response.json()["state"] == "pending" and response["Retry-After"] == "10"


# -- bad input: a clear 4xx and a message, never a 500 ---------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: enough to be refused before decoding."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    import struct
    import zlib

    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.mark.parametrize(
    "data, name, status, code, words",
    [
        (b"", "empty.jpg", 400, "invalid_image", "empty"),
        (b"<!doctype html><html><body>hello</body></html>", "page.jpg", 400, "invalid_image", "not an image"),
        (catalogue_image("Banana").read_bytes()[:400], "truncated.jpg", 400, "invalid_image", "damaged"),
        (SVG, "drawing.svg", 415, "unsupported_format", "SVG"),
        (EPS, "drawing.eps", 415, "unsupported_format", "EPS"),
        (PDF, "leaflet.pdf", 415, "unsupported_format", "PDF"),
        (png_header(20_000, 20_000), "huge.png", 400, "too_many_pixels", "pixels"),
    ],
    ids=["empty", "html-named-jpg", "truncated-jpeg", "svg", "eps", "pdf", "too-many-pixels"],
)
def test_bad_images_answer_4xx_with_a_message(client, shop, data, name, status, code, words):
    response = search(client, upload(data, name))
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert body.get("reason") == ("damaged" if words == "damaged" else None)  # the widget shows a damaged file's detail
    assert words.lower() in body["detail"].lower()
    assert "Error" not in body["detail"]  # the decoder's own words are for staff, not customers
    # A refused kind of file is named for the customer's words: "SVG files are not accepted here."
    assert body.get("format") == (words if status == 415 else None)


def test_missing_field_is_400(client, shop):
    response = client.post(SEARCH, {"limit": 3})
    assert response.status_code == 400
    assert response.json() == {"detail": "Send a photo in the multipart field 'image'.", "code": "required"}


def test_a_photo_sent_as_text_says_to_send_a_file(client, shop, settings):
    """Retrofit's @Part("image") RequestBody, OkHttp's createFormData without a filename and a base64
    string send the photo as a text field: the answer was "Send a photo in the multipart field 'image'",
    which the app had just done; a large one was "too many fields or files", with one field."""
    response = client.post(SEARCH, {"image": "/9j/4AAQSkZJRgABAQ=="})
    assert response.status_code == 400 and response.json()["code"] == "required"
    assert response.json()["detail"].startswith("The field 'image' is text, not a file. Send the photo as a file part")
    assert 'filename="photo.jpg"' in response.json()["detail"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post(SEARCH, {"image": "A" * 5000})
    assert response.status_code == 400 and response.json()["code"] == "too_many_fields"
    assert "text fields are too large" in response.json()["detail"] and "not as text or base64" in response.json()["detail"]


def test_a_blank_photo_is_refused_not_matched(client, shop, jpeg_bytes):
    """A lens cap's photo (one colour all over) "matched" every product at 44 %: nothing to search."""
    for colour in ((255, 255, 255), (3, 3, 3), (200, 30, 30)):
        response = search(client, jpeg_bytes(colour, (640, 480)))
        assert response.status_code == 400
        assert response.json() == {
            "detail": "The photo is blank (one colour all over); send a photo with the product in view.",
            "code": "blank_image",
        }
    # A box drawn over the photo's empty margin: the part searched is blank, the photo is not.
    picture = Image.new("RGB", (600, 300), "white")
    picture.paste(Image.open(catalogue_image("Banana")).convert("RGB").resize((300, 300)), (0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    response = search(client, buffer.getvalue(), box="0.6,0.1,0.9,0.9")
    assert (response.status_code, response.json()["code"]) == (400, "blank_image")
    assert response.json()["detail"].startswith("The part of the photo to search is blank")
    assert search(client, buffer.getvalue(), box="0,0,0.5,1").status_code == 200
    # Fine texture that averages out to grey in a thumbnail (here noise, as a close-up of grains) is searched.
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=90)
    assert search(client, buffer.getvalue()).status_code == 200
    # The least varied picture of the grocery dataset (a white garlic bulb on white) is searched.
    assert search(client, catalogue_image("Garlic").read_bytes()).status_code == 200


def test_json_body_is_415(client, shop):
    response = client.post(SEARCH, {"image": "x"}, content_type="application/json")
    assert response.status_code == 415
    assert response.json() == {
        "detail": "Send the photo as multipart/form-data, in the field 'image' (this request was 'application/json'): "
        "curl -F image=@photo.jpg http://testserver/api/visual-search/search/",
        "code": "unsupported_media_type",
    }
    # The command is one to copy: it read "curl -F image=@photo.jpg <this URL>." (the URL as called, no query).
    response = client.post("/api/visual-search/search?limit=3", {"image": "x"}, content_type="application/json")
    assert response.json()["detail"].endswith(": curl -F image=@photo.jpg http://testserver/api/visual-search/search")
    # A URL-encoded form (an HTML form without enctype="multipart/form-data") cannot carry the
    # photo: it was 400 "required", which did not say why the photo was missing.
    response = client.post(SEARCH, "image=photo.jpg&limit=3", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert "'application/x-www-form-urlencoded'" in response.json()["detail"]
    # The photo's bytes as the body: the same answer, naming what was sent.
    response = client.post(SEARCH, catalogue_image("Banana").read_bytes(), content_type="image/jpeg")
    assert response.status_code == 415 and "'image/jpeg'" in response.json()["detail"]


def test_oversized_upload_is_413_before_decoding(client, shop, settings, monkeypatch):
    import visual_search.search

    def never(*args, **kwargs):
        raise AssertionError("decoded an oversized upload")

    monkeypatch.setattr(visual_search.search, "search_by_image", never)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_UPLOAD_BYTES": 1024}
    photo = catalogue_image("Banana").read_bytes()
    # Small enough that Content-Length passes with the multipart slack: the upload's size catches it.
    response = search(client, photo[:5000])
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large" and "MB" in response.json()["detail"]
    # Far over: refused from Content-Length, before the body is parsed.
    response = search(client, photo + b"\0" * (200 * 1024))
    assert response.status_code == 413


def test_model_failure_is_503(client, shop, monkeypatch):
    from visual_search import serving
    from visual_search.exceptions import WeightsUnavailable

    def broken():
        raise WeightsUnavailable("no weights")

    monkeypatch.setattr(serving, "get_extractor", broken)
    response = search(client, catalogue_image("Banana").read_bytes())
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


@pytest.mark.parametrize("upload", [b"not an image at all", b"%PDF-1.4 a document", b"\xff\xd8\xff\xe0 truncated"])
def test_a_bad_upload_is_refused_before_any_model_loads(client, shop, monkeypatch, upload):
    from visual_search import serving

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for an upload that is not an image")

    monkeypatch.setattr(serving, "get_extractor", no_model)
    response = search(client, upload)
    assert response.status_code in (400, 415), response.content
    assert response.json()["code"] in ("invalid_image", "unsupported_format")


def test_get_is_405_with_code(client):
    response = client.get(SEARCH)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_anonymous_searches_are_throttled(client, shop, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "2/min"}
    photo = catalogue_image("Banana").read_bytes()
    assert search(client, photo).status_code == 200
    assert search(client, photo).status_code == 200
    response = search(client, photo)
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert "throttled" in response.json()["detail"].lower()


def test_only_searches_count_towards_the_throttle(client, shop, settings):
    """A CORS preflight that reaches the view, or a GET answered 405, used up a search."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    for _ in range(3):
        assert client.options(SEARCH, HTTP_ORIGIN="https://app.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST").status_code == 200
        assert client.get(SEARCH).status_code == 405
    photo = catalogue_image("Banana").read_bytes()
    assert search(client, photo).status_code == 200
    assert search(client, photo).status_code == 429


def test_throttle_is_on_by_default(settings):
    from visual_search.api.throttling import SearchRateThrottle

    settings.VISUAL_SEARCH = {k: v for k, v in settings.VISUAL_SEARCH.items() if k != "SEARCH_THROTTLE_RATE"}
    assert SearchRateThrottle().get_rate() == "30/min"


def test_openapi_schema_documents_both_views(settings):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    search_op = schema["paths"]["/api/visual-search/search/"]["post"]
    body = search_op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][body]["properties"]
    assert {"image", "limit", "category"} <= set(fields)
    assert {"200", "400", "413", "415", "429", "503"} <= set(search_op["responses"])
    similar = schema["paths"]["/api/visual-search/products/{id}/similar/"]["get"]
    assert {"200", "404", "409"} <= set(similar["responses"])
    assert {"limit", "category"} <= {p["name"] for p in similar["parameters"]}
    result = schema["components"]["schemas"]["SearchResult"]["properties"]
    assert {"id", "name", "url", "image_url", "score"} <= set(result)
