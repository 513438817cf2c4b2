"""Where a customer's photo, and what is known of the customer, goes (docs/privacy.md): temporary
files, the cache, the database, the storage. The messaging bots' part is in test_whatsapp.py and
test_telegram.py."""

from __future__ import annotations

import base64
import io
import logging
import sys

import pytest
from django.apps import apps
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from django.views.debug import ExceptionReporter
from PIL import Image

from tests.conftest import catalogue_image
from tests.test_api import SEARCH, shop, upload  # noqa: F401 - the fixture
from visual_search import photo_search, search, views
from visual_search.api import views as api_views
from visual_search.contrib.messaging import handling
from visual_search.contrib.messaging.messages import PHOTO, IncomingMessage
from visual_search.contrib.messaging.messenger import Messenger
from visual_search.embeddings import images
from visual_search.embeddings.extractor import Extractor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.search_throttle("5/min")]

CUSTOMER_IP = "93.184.216.34"


def stored_keys() -> list[str]:
    """The cache's keys as anyone reading it sees them: the tests' LocMemCache's, or Redis's ``KEYS *``
    under VISUAL_SEARCH_TEST_CACHE (LocMemCache's internals are no list of Redis's keys)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return [key.decode() for key in backend._cache.get_client(write=False).keys("*")]
    return list(backend._cache)


def test_the_throttle_s_cache_key_holds_no_ip_address(client, shop):  # noqa: F811
    photo = catalogue_image("Banana").read_bytes()
    assert client.post(SEARCH, {"image": upload(photo)}, REMOTE_ADDR=CUSTOMER_IP).status_code == 200
    assert client.post("/search-by-photo/", {"image": upload(photo)}, REMOTE_ADDR=CUSTOMER_IP).status_code == 200
    keys = stored_keys()
    assert any("throttle_visual_search_" in key for key in keys)
    assert not [key for key in keys if CUSTOMER_IP in key]


# --- the photo itself: a temporary file for the request's time only, never stored ------------------

def gps_photo() -> bytes:
    """A catalogue photo with the EXIF a phone writes: its maker and model, and where it was taken."""
    image = Image.open(catalogue_image("Banana"))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "PrivacyMaker", "PrivacyModel-X9"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)}
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture
def spooled(settings, tmp_path, monkeypatch):
    """Every upload over 1 kB goes to a temporary file in ``spool`` (Django's default: over 2.5 MB),
    and each search notes what kind of file it was given."""
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    given = []
    real = search.search_by_image
    monkeypatch.setattr(search, "search_by_image", lambda upload, *a, **k: given.append(type(upload).__name__) or real(upload, *a, **k))
    return spool, given


@pytest.mark.parametrize("url", [SEARCH, "/search-by-photo/"])
@pytest.mark.parametrize("fields, status", [
    ({}, 200),
    ({"limit": "0"}, 400),
    ({"box": "1,1,0,0", "box_x0": "0.9", "box_x1": "0.1"}, 400),
])
def test_a_spooled_photo_is_deleted_when_the_search_ends_however_it_ends(client, shop, spooled, url, fields, status):  # noqa: F811
    spool, given = spooled
    response = client.post(url, {"image": upload(gps_photo(), name="anna-at-home.jpg"), **fields})
    assert response.status_code == status
    assert given in ([], ["TemporaryUploadedFile"])  # 400s before the search; its file was spooled all the same
    assert list(spool.iterdir()) == []


def test_a_spooled_photo_is_deleted_after_a_429_a_413_and_a_500(client, shop, spooled, settings, monkeypatch):  # noqa: F811
    spool, given = spooled
    photo = gps_photo()
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min", "MAX_UPLOAD_BYTES": len(photo) - 1}
    assert client.post("/search-by-photo/", {"image": upload(photo)}).status_code == 413  # read, then refused
    assert client.post("/search-by-photo/", {"image": upload(photo)}).status_code == 429
    assert list(spool.iterdir()) == []
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None, "MAX_UPLOAD_BYTES": 10 * 1024 * 1024}
    monkeypatch.setattr(views, "confident", lambda results: 1 / 0)  # a bug: the page answers 500
    broken = Client(raise_request_exception=False)
    assert broken.post("/search-by-photo/", {"image": upload(photo)}).status_code == 500
    assert given == ["TemporaryUploadedFile"] and list(spool.iterdir()) == []


def test_a_search_writes_nothing_to_the_database_nor_the_storage_and_logs_no_file_name(client, shop, media_root, caplog):  # noqa: F811
    def counts():
        return {model._meta.label: model._default_manager.count() for model in apps.get_models()}

    def files():
        return {str(path.relative_to(media_root)) for path in media_root.rglob("*") if path.is_file()}

    before, stored, photo = counts(), files(), gps_photo()
    # Every logger at every level: visual_search's own lines, and Pillow's (PIL.TiffImagePlugin logs
    # each EXIF tag it reads or writes at DEBUG, with its value).
    with caplog.at_level(logging.DEBUG):
        assert client.post(SEARCH, {"image": upload(photo, name="anna-at-home.jpg")}).status_code == 200
        assert client.post("/search-by-photo/", {"image": upload(photo, name="anna-at-home.jpg")}).status_code == 200
    assert counts() == before
    # Thumbnails of the results (the shop's own pictures) may be made; nothing else.
    assert all(name.startswith("visual_search/thumbnails/") for name in files() - stored)
    assert "anna" not in caplog.text and "Privacy" not in caplog.text and "127.0.0.1" not in caplog.text
    assert not [record.getMessage() for record in caplog.records if "GPS" in record.getMessage() or "52.0" in record.getMessage()]


def test_pillow_logs_no_exif_of_a_photo_the_package_decodes_and_still_logs_the_shop_s(caplog):
    """At DEBUG, Pillow logged the photo's EXIF as the package decoded it: the phone's maker and
    model, and, as the orientation was applied, the GPS position in degrees. Dropped while the package
    decodes; Pillow's lines for the shop's own code are as they were."""
    photo = gps_photo()
    with caplog.at_level(logging.DEBUG):
        images.open_image(photo, max_pixels=10**8, allowed_formats=["JPEG"])
    assert not [record.getMessage() for record in caplog.records if record.name.startswith("PIL")]
    with caplog.at_level(logging.DEBUG):
        Image.open(io.BytesIO(photo)).getexif()
    assert "PrivacyModel" in caplog.text


# --- error reports: what Django's 500 mail (DEBUG = False, ADMINS) shows --------------------------

def test_a_500_report_hides_the_bots_tokens_and_secret_headers(rf, settings):
    """Django's SafeExceptionReporterFilter hides settings and headers whose names say TOKEN, SECRET or
    SIGNATURE: every secret of the bots' settings and both webhooks' headers."""
    settings.DEBUG = False
    settings.VISUAL_SEARCH_TELEGRAM = {"TOKEN": "123:BOT-TOKEN-VALUE", "SECRET": "telegram-secret-value"}
    settings.VISUAL_SEARCH_WHATSAPP = {"ACCESS_TOKEN": "EAA-token-value", "APP_SECRET": "app-secret-value", "VERIFY_TOKEN": "verify-value"}
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        error = sys.exc_info()
    webhook = rf.post("/telegram/webhook/", b"{}", content_type="application/json",
                      HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="telegram-secret-value", HTTP_X_HUB_SIGNATURE_256="sha256=0a1b2c3d")
    for report in (ExceptionReporter(webhook, *error, is_email=True).get_traceback_text(),
                   ExceptionReporter(webhook, *error, is_email=True).get_traceback_html()):
        assert not [secret for secret in ("BOT-TOKEN-VALUE", "telegram-secret-value", "EAA-token-value", "app-secret-value",
                                          "verify-value", "0a1b2c3d") if secret in report]
    # A shop's own view's report lists its files as Django does (the package's: the next test).
    page = rf.post("/shop/upload/", {"image": upload(b"photo", name="anna-at-home.jpg")})
    assert "anna-at-home.jpg" in ExceptionReporter(page, *error, is_email=True).get_traceback_text()


@pytest.mark.parametrize("path", [SEARCH, "/search-by-photo/"])
@pytest.mark.parametrize("failure", ["a bug (500)", "the model (503)"])
def test_a_500_or_503_report_does_not_name_the_photo(shop, settings, monkeypatch, caplog, path, failure):  # noqa: F811
    """Django's report of a 500, and of a 503 (django.request logs both at ERROR, AdminEmailHandler
    mails them), listed request.FILES: the photo's file name, a phone's IMG_20261205_134501.jpg (when
    it was taken) or a customer's anna-at-home.jpg. The package's search views now name it photo.jpg."""
    settings.DEBUG = False

    def fail(*args, **kwargs):
        raise (RuntimeError if "500" in failure else MemoryError)("a bug")

    if "500" in failure:  # after the search, outside its try
        monkeypatch.setattr(photo_search, "describe", fail)
    else:
        monkeypatch.setattr(Extractor, "embed_picture", fail)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = Client(raise_request_exception=False).post(path, {"image": upload(gps_photo(), name="anna-at-home.jpg")})
    assert response.status_code == (500 if "500" in failure else 503)
    [record] = [record for record in caplog.records if record.name == "django.request"]
    reporter = ExceptionReporter(record.request, *(record.exc_info or (None, record.getMessage(), None)), is_email=True)
    for report in (reporter.get_traceback_text(), reporter.get_traceback_html()):
        assert "FILES" in report and "photo.jpg" in report
        assert "anna-at-home" not in report


# --- the photo's bytes in an error report's local variables ---------------------------------------

class PhotoMessenger(Messenger):
    """A bot whose customer sent :func:`gps_photo`."""

    name, settings_name = "privacy", "VISUAL_SEARCH_PRIVACY_BOT"

    def download(self, message):
        return gps_photo()

    def reply_text(self, message, text):
        pass


def html_report(record: logging.LogRecord) -> str:
    """The report Django's AdminEmailHandler(include_html=True) mails for ``record``: every frame's
    local variables, each up to 4 KB, which is where a JPEG keeps its EXIF."""
    return ExceptionReporter(getattr(record, "request", None), *record.exc_info, is_email=True).get_traceback_html()


def failed_search_report(client, caplog, path: str) -> str:
    with caplog.at_level(logging.ERROR, logger="visual_search"):
        if path == "bot":
            handling.answer_photo(PhotoMessenger(), IncomingMessage(chat_id="1234567", kind=PHOTO, file_id="f"), None)
        else:
            assert client.post(path, {"image": upload(gps_photo(), name="anna-at-home.jpg")}).status_code == 503
    [record] = [record for record in caplog.records if record.exc_info]
    return html_report(record)


@pytest.mark.parametrize("path", [SEARCH, "/search-by-photo/", "bot"])
@pytest.mark.parametrize("failing", ["the model", "the decoder"])
def test_a_failed_search_s_error_report_holds_none_of_the_photo(client, shop, settings, monkeypatch, caplog, path, failing):  # noqa: F811
    """A failure while the photo is decoded or searched is logged with its traceback at ERROR; a shop
    mailing those (AdminEmailHandler) got the photo's first 4 KB, its EXIF: phone model, GPS position."""
    settings.DEBUG = False

    def fail(*args, **kwargs):
        raise MemoryError("a bug")

    if failing == "the model":
        monkeypatch.setattr(Extractor, "embed_picture", fail)
    else:  # outside the decoder's own try: not an InvalidImage (400) but a failure (503)
        monkeypatch.setattr(images.structure, "check", fail)
    report = failed_search_report(client, caplog, path)
    assert "search_by_image" in report and "Local Vars" in report  # the frames and their variables are there
    assert not [seen for seen in ("Exif\\x00", "PrivacyModel", "PrivacyMaker") if seen in report]


def test_a_500_report_hides_a_photo_sent_as_text(settings, monkeypatch, caplog):
    """Apps that send the photo as a text field (base64): a 500 report listed it in POST and in the
    view's local variables."""
    settings.DEBUG = False
    photo = base64.b64encode(gps_photo()).decode()

    def fail(data):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api_views, "_missing_photo", fail)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        assert Client(raise_request_exception=False).post(SEARCH, {"image": photo}).status_code == 500
    [record] = [record for record in caplog.records if record.exc_info]
    report = html_report(record)
    assert "_missing_photo" in report and "Local Vars" in report
    assert photo[:64] not in report
