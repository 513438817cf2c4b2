"""A front end on another origin (docs/customers.md): the docs' django-cors-headers settings, as
written there, let a page at https://shop.example search, read ``Retry-After`` and send the session
cookie. Checked in Chromium too (the docs say how); here through Django's test client."""

import ast
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.conftest import catalogue_image

pytest.importorskip("corsheaders", reason="django-cors-headers is not installed (requirements.txt has it)")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]

SEARCH = "/api/visual-search/search/"
FRONT_END = "https://shop.example"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "customers.md"


def section() -> str:
    return DOCS.read_text().split("### A front end on another origin", 1)[1].split("\n### ", 1)[0]


def documented_settings() -> dict:
    """The settings block of the docs' section: its ``NAME = value`` lines, the ``...`` ones apart."""
    block = re.search(r"```python\n(.*?)```", section(), re.DOTALL).group(1)
    assert '"corsheaders"' in block and '"corsheaders.middleware.CorsMiddleware"' in block
    found = {}
    for line in block.splitlines():
        name, equals, value = line.partition("#")[0].partition("=")
        if equals and "..." not in value:
            found[name.strip()] = ast.literal_eval(value.strip())
    return found


@pytest.fixture
def cors(settings):
    """The docs' block, CorsMiddleware first, as it says."""
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "corsheaders"]
    settings.MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE]
    for name, value in documented_settings().items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def banana(make_product):
    make_product("Banana", catalogue_image("Banana"), category="fruit")
    return catalogue_image("Banana").read_bytes()


def post_photo(client, data: bytes, **headers):
    return client.post(SEARCH, {"image": SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")}, **headers)


def test_the_docs_block_lets_the_front_end_read_results_and_retry_after(client, cors, banana):
    cors.VISUAL_SEARCH = {**cors.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    response = post_photo(client, banana, HTTP_ORIGIN=FRONT_END, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == FRONT_END
    throttled = post_photo(client, banana, HTTP_ORIGIN=FRONT_END)
    assert throttled.status_code == 429 and throttled["Access-Control-Allow-Origin"] == FRONT_END
    # Not a CORS-safelisted response header: without this the script reads null (seen in Chromium).
    assert "retry-after" in throttled["Access-Control-Expose-Headers"].lower() and int(throttled["Retry-After"]) > 0


def test_a_preflight_is_answered_for_a_token_and_counts_no_search(client, cors, banana):
    """A front end on another site authenticates with a token (``Authorization``): its POST is
    preflighted, and django-cors-headers' default allowed headers include it."""
    cors.VISUAL_SEARCH = {**cors.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    for _ in range(3):
        preflight = client.options(SEARCH, HTTP_ORIGIN=FRONT_END, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                                   HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization")
        assert preflight.status_code == 200 and preflight["Access-Control-Allow-Origin"] == FRONT_END
        assert "authorization" in preflight["Access-Control-Allow-Headers"]
    assert post_photo(client, banana, HTTP_ORIGIN=FRONT_END).status_code == 200


def test_only_the_front_end_and_only_the_api(client, cors, banana):
    assert "Access-Control-Allow-Origin" not in post_photo(client, banana, HTTP_ORIGIN="https://evil.example")
    page = client.get("/search-by-photo/", HTTP_ORIGIN=FRONT_END)
    assert page.status_code == 200 and "Access-Control-Allow-Origin" not in page


def test_a_signed_in_customer_s_cookie_needs_credentials_and_no_csrf_token(cors, banana):
    """``credentials: "include"`` and ``CORS_ALLOW_CREDENTIALS``: the customer is recognised (a shop
    open to signed-in customers only), and no CSRF token is asked for (the API changes nothing)."""
    cors.CORS_ALLOW_CREDENTIALS = True
    cors.VISUAL_SEARCH = {**cors.VISUAL_SEARCH, "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    customer = Client(enforce_csrf_checks=True)
    customer.force_login(User.objects.create_user("ann"))
    response = post_photo(customer, banana, HTTP_ORIGIN=FRONT_END)
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Credentials"] == "true" and response["Access-Control-Allow-Origin"] == FRONT_END
    assert post_photo(Client(), banana, HTTP_ORIGIN=FRONT_END).json()["code"] == "not_authenticated"


def test_the_docs_say_when_a_browser_sends_the_session_cookie():
    """Checked in Chromium 150: a page on another site (shop.example calling api.example) never sent
    the session cookie, SameSite Lax (Django's default) nor None; fetch's default credentials send
    none to another origin at all. The docs had said CORS_ALLOW_CREDENTIALS was all it took."""
    text = " ".join(section().split())
    for words in ('credentials: "include"', "CORS_ALLOW_CREDENTIALS = True", "SESSION_COOKIE_SAMESITE",
                  "third-party cookie", "another site", "same site", "`Authorization`"):
        assert words.lower() in text.lower(), words
