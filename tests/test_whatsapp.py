"""Search by photo in WhatsApp, against a local fake Graph API (tests/whatsapp/fake_api.py): the
webhook's verification and signatures, the answers to every kind of message, the limits, the Graph
API's errors, the background and the checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import logging
import threading
import time

import pytest
from django.core.cache import cache
from django.utils import translation

from tests.conftest import catalogue_image
from tests.whatsapp.fake_api import PHONE_NUMBER_ID, TOKEN, VERSION, FakeGraphAPI
from visual_search import queue
from visual_search.contrib.messaging import replies
from visual_search.contrib.messaging.tasks import HANDLE_MESSAGE, handle_message
from visual_search.contrib.whatsapp import checks
from visual_search.contrib.whatsapp.payload import incoming_messages

pytestmark = pytest.mark.django_db(transaction=True)

APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY_TOKEN = "verify-me_please"
WEBHOOK = "/whatsapp/webhook/"
CUSTOMER = "46701234567"
_ids = itertools.count(1000)


@pytest.fixture
def api():
    with FakeGraphAPI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def bot_settings(settings, api):
    settings.ROOT_URLCONF = "tests.whatsapp.urls"
    settings.VISUAL_SEARCH_WHATSAPP = {
        "ACCESS_TOKEN": TOKEN, "PHONE_NUMBER_ID": PHONE_NUMBER_ID, "APP_SECRET": APP_SECRET, "VERIFY_TOKEN": VERIFY_TOKEN,
        "API_URL": api.url, "API_VERSION": VERSION, "RESULTS": 3, "RATE": "10/min",
        "BACKGROUND": "inline",  # the work runs before the webhook answers: the tests see its replies at once
    }
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RESULT_ADAPTER": "tests.telegram.adapters.PricedAdapter"}
    cache.clear()
    yield settings
    cache.clear()


@pytest.fixture
def shop(make_product):
    names = ["Pink-Lady", "Granny-Smith", "Banana", "Arla-Standard-Milk"]
    return {name: make_product(name.replace("-", " "), catalogue_image(name)) for name in names}


def delivery(message: dict, customer: str = CUSTOMER, phone_number_id: str = PHONE_NUMBER_ID) -> dict:
    """A webhook delivery of one customer message, as Meta sends it."""
    message = {"from": customer, "id": f"wamid.in{next(_ids)}", "timestamp": "1733300000", **message}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
             "contacts": [{"profile": {"name": "Ann"}, "wa_id": customer}], "messages": [message]}
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}]}


def image(media_id: str, mime_type: str = "image/jpeg") -> dict:
    return delivery({"type": "image", "image": {"id": media_id, "mime_type": mime_type, "sha256": "x"}})


def document(media_id: str, mime_type: str | None, filename: str) -> dict:
    media = {"id": media_id, "filename": filename, "sha256": "x", **({"mime_type": mime_type} if mime_type else {})}
    return delivery({"type": "document", "document": media})


def text(body: str, **kwargs) -> dict:
    return delivery({"type": "text", "text": {"body": body}}, **kwargs)


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def post(client, body: dict, signature: str | None = "valid"):
    raw = json.dumps(body).encode()
    headers = {} if signature is None else {"HTTP_X_HUB_SIGNATURE_256": sign(raw) if signature == "valid" else signature}
    return client.post(WEBHOOK, data=raw, content_type="application/json", **headers)


def add_photo(api, media_id: str, product: str) -> None:
    api.files[media_id] = catalogue_image(product).read_bytes()


# --- the webhook: verification and signatures ---------------------------------------------------------

def test_meta_s_verification_handshake_echoes_the_challenge(client):
    response = client.get(WEBHOOK, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert response.status_code == 200 and response.content == b"1158201444"
    assert client.get(WEBHOOK.rstrip("/"), {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                            "hub.challenge": "7"}).content == b"7"  # no APPEND_SLASH redirect


@pytest.mark.parametrize("query", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
    {},
])
def test_a_wrong_verification_is_refused(client, query, caplog):
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        response = client.get(WEBHOOK, query)
    assert response.status_code == 403 and b"1" not in response.content
    assert "verification request" in caplog.text


def test_without_a_verify_token_no_verification_passes(client, settings):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "VERIFY_TOKEN": None}
    assert client.get(WEBHOOK, {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}).status_code == 403


@pytest.mark.parametrize("signature, reason", [
    (None, "without X-Hub-Signature-256"),
    ("sha256=" + "0" * 64, "wrong X-Hub-Signature-256"),
    ("sha1=abc", "wrong X-Hub-Signature-256"),
    ("", "without X-Hub-Signature-256"),
])
def test_an_unsigned_or_badly_signed_delivery_is_refused_and_nothing_is_sent(client, api, signature, reason, caplog):
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        response = post(client, text("hello"), signature=signature)
    assert response.status_code == 403 and api.calls == []
    assert reason in caplog.text


def test_a_body_signed_with_another_secret_or_changed_after_signing_is_refused(client, api):
    raw = json.dumps(text("hello")).encode()
    other = client.post(WEBHOOK, data=raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sign(raw, "another"))
    changed = client.post(WEBHOOK, data=raw + b" ", content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sign(raw))
    assert other.status_code == changed.status_code == 403 and api.calls == []


def test_without_an_app_secret_everything_is_refused(client, api, settings, caplog):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "APP_SECRET": None}
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, text("hi"), signature=sign(json.dumps(text("hi")).encode(), "")).status_code == 403
    assert api.calls == [] and "APP_SECRET is not configured" in caplog.text


def test_statuses_and_other_deliveries_are_answered_200_and_not_work(client, api, caplog):
    status = {"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": "wamid.out1", "status": "delivered", "recipient_id": CUSTOMER},
                     {"id": "wamid.out2", "status": "failed", "recipient_id": CUSTOMER,
                      "errors": [{"code": 131053, "title": "Media upload error"}]}]}}]}]}
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, status).status_code == 200
    assert "could not deliver a message to ***4567: 131053 Media upload error" in caplog.text
    assert post(client, {"object": "page", "entry": []}).status_code == 200
    reaction = delivery({"type": "reaction", "reaction": {"message_id": "wamid.out1", "emoji": "👍"}})
    assert post(client, reaction).status_code == 200
    raw = b"{nope"
    assert client.post(WEBHOOK, data=raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=sign(raw)).status_code == 400
    assert client.put(WEBHOOK).status_code == 405
    assert api.calls == []


def test_messages_to_another_number_of_the_account_are_left_alone(client, api):
    assert post(client, text("hello", phone_number_id="999")).status_code == 200
    assert api.calls == []


# --- photos ------------------------------------------------------------------------------------------

def test_a_photo_gets_one_picture_per_result_best_first_with_price_match_and_link(client, api, shop):
    add_photo(api, "pink", "Pink-Lady")
    body = image("pink")
    wamid = body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    response = post(client, body)
    assert response.status_code == 200 and response.json() == {}
    # Read and "typing..." at once, then the media's URL and its bytes, with the token.
    assert api.kinds()[:3] == ["read", "media-info", "download"]
    assert api.calls[0][1] == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
                               "typing_indicator": {"type": "text"}}
    assert api.calls[1][1] == {"media_id": "pink", "phone_number_id": PHONE_NUMBER_ID}
    pictures = [m for m in api.sent() if m["type"] == "image"]
    assert len(pictures) == 3 and [m["type"] for m in api.sent()] in (["image"] * 3, ["text"] + ["image"] * 3)
    pink = shop["Pink-Lady"]
    for sent in api.sent():
        assert sent["to"] == CUSTOMER and sent["messaging_product"] == "whatsapp"
        assert sent["context"] == {"message_id": wamid}  # quotes the customer's photo
    title, link = pictures[0]["image"]["caption"].split("\n")
    assert title.startswith(f"1. Pink Lady — {pink.pk}.90 SEK · ") and title.endswith("% match")
    assert link == f"http://testserver/products/{pink.pk}/"
    assert [m["image"]["caption"][:2] for m in pictures] == ["1.", "2.", "3."]
    # Uploaded from the shop's storage: a JPEG each, sent by its media id.
    uploads = [params for kind, params, _ in api.calls if kind == "upload"]
    assert len(uploads) == 3 and all(u["file"][:2] == b"\xff\xd8" and u["type"] == "image/jpeg" for u in uploads)
    assert all(set(m["image"]) == {"id", "caption"} for m in pictures)


def test_an_uploaded_picture_is_reused_by_the_next_search(client, api, shop):
    add_photo(api, "pink", "Pink-Lady")
    post(client, image("pink"))
    post(client, image("pink"))
    assert api.kinds().count("upload") == 3 and len([m for m in api.sent() if m["type"] == "image"]) == 6


def test_an_uploaded_picture_from_a_bucket_with_signed_urls_is_reused(client, api, settings, make_product, monkeypatch):
    """Media on a private bucket: every thumbnail URL is signed afresh (a new query string each
    second), so a cache keyed by the whole URL never matched, and every reply uploaded its pictures again."""
    from django.core.files.storage import storages

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "tests.remote_storage.RemoteStorage"}}
    bucket = storages["default"]
    for name in ("Pink-Lady", "Granny-Smith", "Banana"):
        make_product(name.replace("-", " "), catalogue_image(name))
    add_photo(api, "pink", "Pink-Lady")
    post(client, image("pink"))
    later = bucket.now() + 60
    monkeypatch.setattr(bucket, "now", lambda: later)  # the next customer, a minute later
    post(client, image("pink"))
    assert api.kinds().count("upload") == 3 and len([m for m in api.sent() if m["type"] == "image"]) == 6


def test_two_buckets_files_of_one_name_are_uploaded_apart(monkeypatch):
    """A gallery field on its own bucket beside the default one: a file of the same name in each was
    remembered by its name alone, and WhatsApp was sent the first bucket's picture for the second's."""
    from tests.remote_storage import RemoteStorage
    from visual_search.contrib.messaging import pictures
    from visual_search.contrib.whatsapp import messenger

    products = RemoteStorage(base_url="https://products.example-bucket.com/")
    gallery = RemoteStorage(base_url="https://gallery.example-bucket.com/")
    monkeypatch.setattr(pictures, "_storages", lambda: [products, gallery])
    for storage in (products, gallery):
        storage.save("photos/1.jpg", io.BytesIO(catalogue_image("Banana").read_bytes()))
    first, second = products.url("photos/1.jpg"), gallery.url("photos/1.jpg")
    assert messenger._picture_key(first) != messenger._picture_key(second)
    products.now = lambda: time.time() + 60  # signed again a minute later: the same picture
    assert messenger._picture_key(products.url("photos/1.jpg")) == messenger._picture_key(first)


def test_a_picture_whatsapp_refuses_goes_out_as_text(client, api, shop, caplog):
    add_photo(api, "pink", "Pink-Lady")
    api.fail("upload", "131053")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        post(client, image("pink"))
    assert len([m for m in api.sent() if m["type"] == "image"]) == 2
    [listed] = [t for t in api.texts() if t[1:3] == ". "]
    assert listed.split("\n")[1].startswith("http://testserver/products/") and "refused the picture" in caplog.text


def test_an_image_sent_as_a_document_gets_results(client, api, shop):
    add_photo(api, "banana-doc", "Banana")
    post(client, document("banana-doc", "image/jpeg", "IMG_1.JPG"))
    assert [m for m in api.sent() if m["type"] == "image"][0]["image"]["caption"].startswith("1. Banana — ")


@pytest.mark.parametrize("body, answer", [
    (text("hello"), replies.help_text()),
    (text("Help"), replies.usage()),
    (delivery({"type": "sticker", "sticker": {"id": "st", "mime_type": "image/webp", "animated": False}}), replies.sticker()),
    (document("pdf", "application/pdf", "list.pdf"), replies.not_an_image()),
    (delivery({"type": "audio", "audio": {"id": "a", "mime_type": "audio/ogg", "voice": True}}), replies.help_text()),
    (delivery({"type": "location", "location": {"latitude": 59.3, "longitude": 18.0}}), replies.help_text()),
])
def test_what_is_not_a_photo_gets_a_helpful_sentence_and_nothing_is_fetched(client, api, body, answer):
    assert post(client, body).status_code == 200
    assert api.kinds() == ["messages"]
    sent = api.sent()[0]
    assert sent["type"] == "text" and sent["text"] == {"body": answer, "preview_url": False} and sent["to"] == CUSTOMER


@pytest.mark.parametrize("body", [
    image("plan", "image/svg+xml"),
    document("doc", "image/vnd.adobe.photoshop", "mockup.psd"),
    document("doc", None, "plan.SVG"),  # no type: its name says it
])
def test_an_unsupported_image_format_is_refused_before_any_download(client, api, body):
    post(client, body)
    assert api.kinds() == ["messages"]
    answer = api.texts()[0]
    assert answer == replies.unreadable(answer.split(" ")[0]) and "JPEG, PNG or WebP" in answer


def test_a_photo_over_the_size_limit_is_refused_unread(client, api):
    api.files["big"] = b"x"
    api.file_sizes["big"] = 12 * 1024 * 1024  # over the tests' MAX_UPLOAD_BYTES, 10 MB: Graph's media info says so
    post(client, image("big"))
    assert api.kinds() == ["read", "media-info", "messages"]
    assert api.texts() == [replies.too_large(10 * 1024 * 1024)] and "at most 10 MB" in api.texts()[0]


def test_a_file_larger_than_announced_is_not_read_past_the_limit(client, api, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_UPLOAD_BYTES": 1000}
    api.files["sly"] = b"\xff\xd8\xff" + b"x" * 5000
    api.file_sizes["sly"] = 500  # the media info lies
    post(client, image("sly"))
    assert api.kinds() == ["read", "media-info", "download", "messages"] and "too large" in api.texts()[0]


def test_a_file_that_is_not_really_an_image_gets_the_app_message(client, api, shop):
    api.files["fake"] = b"this is not a picture"
    post(client, image("fake"))
    assert api.texts() == [replies.unreadable()]


# --- languages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("customer, expected", [("4915112345678", "de"), ("41791234567", "fr"), ("4179", "fr"),
                                                ("46701234567", "en-us"), ("33612345678", "fr")])
def test_the_bot_answers_in_the_language_of_the_customer_s_number(client, api, settings, customer, expected):
    settings.LANGUAGE_CODE = "en-us"
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP,
                                       "PHONE_LANGUAGES": {"49": "de", "+33": "fr", "41": "de", "4179": "fr"}}
    post(client, text("hi", customer=customer))
    with translation.override(expected):
        assert api.texts() == [replies.help_text()]
    if expected != "en-us":
        assert api.texts()[0] != replies.help_text()  # shipped catalogues: not the English words


def test_without_phone_languages_the_shop_s_language_is_used(client, api, settings):
    settings.LANGUAGE_CODE = "de"
    post(client, text("hi", customer="4915112345678"))
    with translation.override("de"):
        assert api.texts() == [replies.help_text()]


# --- deliveries, rates, the background -------------------------------------------------------------

def test_a_repeated_delivery_is_answered_once(client, api):
    body = text("hello")
    assert [post(client, body).status_code for _ in range(3)] == [200, 200, 200]
    assert api.kinds() == ["messages"]


def test_one_delivery_with_several_messages_answers_each(client, api):
    body = text("hello")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"].append({**value["messages"][0], "id": "wamid.second", "text": {"body": "help"}})
    post(client, body)
    assert api.texts() == [replies.help_text(), replies.usage()]


def test_a_chat_over_its_rate_is_told_to_wait_once(client, api, settings):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "RATE": "2/min"}
    for _ in range(5):
        assert post(client, text("hello")).status_code == 200
    assert api.texts() == [replies.help_text(), replies.help_text(), replies.please_wait()]


def test_the_webhook_answers_before_the_reply_is_sent_from_a_thread(client, api, settings):
    """The reply is held at the fake API until the webhook has answered: a webhook that waited for it
    would answer after the client's TIMEOUT (30 s). Measured against a reply taking 1 s, the answer
    had to come within 0.9 s, which a loaded machine's scheduling could miss."""
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "BACKGROUND": None, "TIMEOUT": 30}  # no broker: a thread
    api.held["messages"] = held = threading.Event()
    started = time.monotonic()
    try:
        assert post(client, text("hello")).status_code == 200
        answered = time.monotonic() - started
    finally:
        held.set()
    assert answered < 10
    assert api.wait_for()[0]["text"]["body"] == replies.help_text()


def test_with_celery_the_task_gets_json_safe_arguments(client, api, shop, settings, monkeypatch):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "BACKGROUND": None}
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **options: sent.append((name, json.loads(json.dumps(args)))))
    add_photo(api, "pink", "Pink-Lady")
    assert post(client, image("pink")).status_code == 200
    assert api.calls == []  # nothing done in the web process
    [(name, args)] = sent
    assert name == HANDLE_MESSAGE and args[0] == "visual_search.contrib.whatsapp.messenger.WhatsAppMessenger"
    handle_message(*args)  # as the worker runs it
    assert [m for m in api.sent() if m["type"] == "image"][0]["image"]["caption"].startswith("1. Pink Lady — ")


# --- Graph API errors --------------------------------------------------------------------------------

def test_a_rate_limit_is_retried_once_after_retry_after(client, api):
    api.fail("messages", "429:1")
    post(client, text("hello"))
    (first, _, at), (second, params, again) = api.calls
    assert first == second == "messages" and params["text"]["body"] == replies.help_text() and again - at >= 0.95


def test_a_throughput_limit_without_retry_after_is_retried_after_a_second(client, api):
    api.fail("messages", "130429")
    post(client, text("hello"))
    assert api.kinds() == ["messages", "messages"] and api.calls[1][2] - api.calls[0][2] >= 0.95


def test_a_long_or_second_rate_limit_gives_up_and_says_so(client, api, caplog):
    api.fail("messages", "429:3600", "130429", "130429")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, text("hello")).status_code == 200
        assert post(client, text("hello")).status_code == 200
    assert time.monotonic() - started < 5 and api.kinds() == ["messages"] * 3
    assert caplog.text.count("Meta's rate limit") == 2


def test_an_expired_token_is_logged_as_an_error_with_what_to_do(client, api, shop, caplog):
    add_photo(api, "pink", "Pink-Lady")
    api.fail("media-info", "190")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, image("pink")).status_code == 200
    [record] = [r for r in caplog.records if "fetching the photo" in r.getMessage()]
    assert record.levelno == logging.ERROR and "System User's permanent token" in record.getMessage()
    assert "ACCESS_TOKEN" in record.getMessage()
    assert api.texts() == [replies.failed()]  # the send itself still worked


def test_a_wrong_access_token_is_refused_by_graph_and_logged(client, api, settings, caplog):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "ACCESS_TOKEN": "revoked"}
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, text("hello")).status_code == 200
    assert "error 190/463" in caplog.text and "ACCESS_TOKEN" in caplog.text


def test_an_answer_outside_the_24_hour_window_is_dropped_with_the_reason(client, api, shop, caplog):
    add_photo(api, "pink", "Pink-Lady")
    api.fail("messages", "131047", "131047", "131047", "131047")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, image("pink")).status_code == 200
    assert "24 hours" in caplog.text and "Celery worker" in caplog.text
    # The first refusal stops the results: no text list of them sent into the same refusal.
    assert len([r for r in caplog.records if "131047" in r.getMessage()]) <= 2


def test_a_lost_connection_is_logged_and_the_webhook_still_answers(client, api, shop, caplog):
    add_photo(api, "pink", "Pink-Lady")
    api.fail("media-info", "drop")
    api.fail("messages", "drop")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, image("pink")).status_code == 200
    assert api.kinds() == ["read", "media-info", "messages"]
    # The customer's number is personal data a log keeps for months: its last digits tell chats apart.
    assert "search by photo for chat ***4567 failed" in caplog.text and "ConnectionError" in caplog.text
    assert CUSTOMER not in caplog.text


def test_a_failed_typing_indicator_does_not_stop_the_search(client, api, shop):
    add_photo(api, "pink", "Pink-Lady")
    api.fail("read", "100")
    post(client, image("pink"))
    assert len([m for m in api.sent() if m["type"] == "image"]) == 3


# --- parsing and checks ------------------------------------------------------------------------------

def test_the_payload_is_read_without_surprises():
    assert incoming_messages({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}, "1") == []
    assert incoming_messages([], "1") == [] and incoming_messages({"entry": "x"}, "1") == []
    [message] = incoming_messages(image("m1"), PHONE_NUMBER_ID)
    assert (message.kind, message.file_id, message.mime_type, message.chat_id) == ("photo", "m1", "image/jpeg", CUSTOMER)
    assert message.reply_to == message.event_id and message.event_id.startswith("wamid.")
    [message] = incoming_messages(text("hi"), PHONE_NUMBER_ID)
    assert message.reply_to == ""  # text answers do not quote


def test_the_checks(settings):
    assert [m.id for m in checks.check_settings()] == ["visual_search_whatsapp.W002"]  # the tests' 'inline'
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "BACKGROUND": None}
    assert checks.check_settings() == []
    settings.VISUAL_SEARCH_WHATSAPP = {"PHONE_NUMBER_ID": "+46 70", "RESULTS": 0, "API_VERSION": "23", "API_URL": "graph",
                                       "PHONE_LANGUAGES": {"DE": "de"}, "APP_SECERT": "x"}
    found = {(m.id, m.msg.split("]")[0]) for m in checks.check_settings()}
    assert found == {
        ("visual_search_whatsapp.E001", "VISUAL_SEARCH_WHATSAPP['ACCESS_TOKEN'"),
        ("visual_search_whatsapp.E002", "VISUAL_SEARCH_WHATSAPP['PHONE_NUMBER_ID'"),
        ("visual_search_whatsapp.E003", "VISUAL_SEARCH_WHATSAPP['APP_SECRET'"),
        ("visual_search_whatsapp.E004", "VISUAL_SEARCH_WHATSAPP['VERIFY_TOKEN'"),
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['RESULTS'"),
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['API_VERSION'"),
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['API_URL'"),
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['PHONE_LANGUAGES'"),
        ("visual_search_whatsapp.W001", "VISUAL_SEARCH_WHATSAPP['APP_SECERT'"),
    }
    warning = [m for m in checks.check_settings() if m.id == "visual_search_whatsapp.W001"][0]
    assert "APP_SECRET" in warning.msg


def test_the_checks_name_the_key_its_default_and_the_docs(settings):
    """The words every messenger's checks share (visual_search.contrib.messaging.checks), in WhatsApp's."""
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "BACKGROUND": None, "API_URL": "graph", "RETRY_AFTER_MAX": True}
    assert sorted((m.id, m.msg, m.hint) for m in checks.check_settings()) == [
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['API_URL'] = 'graph': expected an absolute URL such as "
         "'https://graph.facebook.com'.", f"Leave it out for the default, {'https://graph.facebook.com'!r}."),
        ("visual_search_whatsapp.E005", "VISUAL_SEARCH_WHATSAPP['RETRY_AFTER_MAX'] = True: expected a number of seconds, at least 0.",
         "Leave it out for the default, 5."),
    ]


def test_a_picture_outside_the_storage_is_sent_as_its_link_only_from_a_public_host():
    from visual_search.contrib.whatsapp.messenger import WhatsAppMessenger

    messenger = WhatsAppMessenger()
    assert messenger.image_of("https://cdn.example.com/p/1.jpg") == {"link": "https://cdn.example.com/p/1.jpg"}
    assert messenger.image_of("https://10.0.0.5/p/1.jpg") is None  # Meta cannot reach it, and it is not in the storage
    assert messenger.image_of("http://cdn.example.com/p/1.jpg") is None  # links over HTTPS only
    assert messenger.image_of("") is None


def run_command(*args) -> str:
    from io import StringIO

    from django.core.management import call_command

    from visual_search.contrib.whatsapp.management.commands.visual_search_whatsapp import Command

    out = StringIO()
    call_command(Command(), *args, stdout=out)
    return out.getvalue()


def test_the_command_shows_the_number_and_subscribes_the_app(api):
    info = run_command("info")
    assert "+1 555-000-1111" in info and "Test Shop" in info and "GREEN" in info and "token works" in info
    assert api.calls[-1][0] == "number" and "verified_name" in api.calls[-1][1]["fields"]
    assert "account 102290129340398" in run_command("subscribe", "102290129340398")
    assert api.calls[-1][:2] == ("subscribe", {"waba_id": "102290129340398"})


def test_the_command_says_what_to_do_about_a_bad_token(api, settings):
    from django.core.management.base import CommandError

    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "ACCESS_TOKEN": "expired"}
    with pytest.raises(CommandError, match="System User's permanent token"):
        run_command("info")
    with pytest.raises(CommandError, match="not a WhatsApp Business Account ID"):
        run_command("subscribe", "my-account")


@pytest.mark.parametrize("body", [
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "metadata": "x", "messages": [{"from": CUSTOMER, "id": "w1", "type": "text", "text": "not a dict"}]}}]}]},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": PHONE_NUMBER_ID}, "messages": [{"from": CUSTOMER, "id": "w2", "type": None}],
        "statuses": ["x", {"status": "failed", "errors": "?"}]}}]}]},
])
def test_an_odd_payload_is_answered_200_without_a_crash(client, api, body, settings):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "PHONE_LANGUAGES": "de"}  # malformed too
    assert post(client, body).status_code == 200
    assert all(m["text"]["body"] == replies.help_text() for m in api.sent())


def test_a_delivery_that_cannot_be_read_is_logged_without_the_customer_s_number_name_or_words(client, api, caplog):
    body = delivery({"type": "text", "text": {"body": "my address is Main Street 5"}})
    body["entry"][0]["changes"][0]["value"]["statuses"] = 5  # a shape not foreseen: reading it raises
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert post(client, body).status_code == 200
    assert "could not read a delivery" in caplog.text
    assert CUSTOMER not in caplog.text and "Ann" not in caplog.text and "Main Street" not in caplog.text


def test_the_cache_keeps_no_phone_number_nor_message_id_of_a_customer(client, api, shop, settings):
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "RATE": "1/min"}
    add_photo(api, "pink", "Pink-Lady")
    body = image("pink")
    wamid = body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert post(client, body).status_code == 200
    assert post(client, text("hello")).status_code == 200  # over the rate: the "warned" key too
    keys = list(cache._cache)  # tests' LocMemCache; Redis lists the same keys
    assert any(":rate:" in key for key in keys) and any(":seen:" in key for key in keys) and any(":warned:" in key for key in keys)
    assert not [key for key in keys if CUSTOMER in key or wamid in key]


def test_a_queued_answer_expires_and_celery_shows_no_phone_number(client, api, settings, monkeypatch):
    """The broker message must hold the chat id (the worker answers it), but its ``argsrepr`` is what
    Celery shows in events, Flower and ``celery inspect``; and a message left for hours is dropped."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    settings.VISUAL_SEARCH_WHATSAPP = {**settings.VISUAL_SEARCH_WHATSAPP, "BACKGROUND": None}
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **options: sent.append(options))
    assert post(client, image("pink")).status_code == 200
    [options] = sent
    assert options["expires"] == 3600
    assert CUSTOMER not in options["argsrepr"] and "***4567" in options["argsrepr"]


def test_no_log_line_names_a_message_id_which_encodes_the_customer_s_number(client, api, caplog):
    wamid = "wamid." + base64.b64encode(b"\x1c\x18\x0b" + CUSTOMER.encode() + b"\x15\x02\x00\x12\x18\x14ABCDEF").decode()
    body = delivery({"type": "text", "text": {"body": "hello"}, "id": wamid})
    failed = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": wamid, "status": "failed", "recipient_id": CUSTOMER, "errors": [{"code": 131047}]}]}}]}]}
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert [post(client, body).status_code for _ in range(2)] == [200, 200]  # the second: seen before
        assert post(client, failed).status_code == 200
    assert "seen before" in caplog.text and "could not deliver" in caplog.text
    assert wamid not in caplog.text and CUSTOMER not in caplog.text
