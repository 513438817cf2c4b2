"""Search by photo in Telegram, against a local fake Bot API (tests/telegram/fake_api.py): the webhook,
the answers to every kind of message, the limits, the API's errors, the background and the command."""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import time

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import translation
from PIL import Image

from tests.asgi import asgi_request
from tests.conftest import catalogue_image
from tests.telegram.fake_api import TOKEN, FakeBotAPI
from visual_search import capacity, queue
from visual_search.contrib.messaging import background, replies
from visual_search.contrib.messaging.handling import handle
from visual_search.contrib.messaging.messages import PHOTO, IncomingMessage
from visual_search.contrib.messaging.tasks import HANDLE_MESSAGE, handle_message
from visual_search.contrib.telegram import checks
from visual_search.contrib.telegram.management.commands.visual_search_telegram import Command
from visual_search.contrib.telegram.messenger import TelegramMessenger
from visual_search.contrib.telegram.updates import incoming_message

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # python-telegram-bot's own RetryAfter constructor reads its deprecated int retry_after (22.2+);
    # visual_search reads it with the warning silenced and handles the timedelta it will become.
    pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
]

SECRET = "s3cret-token_for-tests"
WEBHOOK = "/telegram/webhook/"
CHAT = 4242
_update_ids = itertools.count(1000)


@pytest.fixture
def api():
    with FakeBotAPI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def bot_settings(settings, api):
    settings.ROOT_URLCONF = "tests.telegram.urls"
    settings.VISUAL_SEARCH_TELEGRAM = {
        "TOKEN": TOKEN, "SECRET": SECRET, "API_URL": api.url, "RESULTS": 3, "RATE": "10/min",
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


def update(message: dict, update_id: int | None = None) -> dict:
    message = {"message_id": 1, "date": 0, "chat": {"id": CHAT, "type": "private"},
               "from": {"id": CHAT, "is_bot": False, "first_name": "Ann", "language_code": "en"}, **message}
    return {"update_id": next(_update_ids) if update_id is None else update_id, "message": message}


def photo(file_id: str, size: int, thumbnail: bool = True) -> dict:
    # Telegram sends each photo in several sizes, smallest first.
    sizes = [{"file_id": "thumb", "file_unique_id": "t", "width": 90, "height": 67, "file_size": 900}] * thumbnail
    return update({"photo": [*sizes, {"file_id": file_id, "file_unique_id": "p", "width": 800, "height": 600,
                                      "file_size": size}]})


def post(client, body: dict, secret: str | None = SECRET):
    headers = {} if secret is None else {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret}
    return client.post(WEBHOOK, data=json.dumps(body), content_type="application/json", **headers)


def add_photo(api, file_id: str, product: str) -> int:
    api.files[file_id] = catalogue_image(product).read_bytes()
    return len(api.files[file_id])


def album(params: dict) -> list[dict]:
    """The pictures of a sendMediaGroup call, each with its caption and its URL or uploaded bytes."""
    media = json.loads(params["media"])
    for item in media:
        if item["media"].startswith("attach://"):
            item["bytes"] = params[item["media"][len("attach://"):]]
    return media


def test_a_photo_gets_one_album_with_the_right_product_first_its_price_match_and_link(client, api, shop):
    size = add_photo(api, "pink", "Pink-Lady")
    response = post(client, photo("pink", size))
    assert response.status_code == 200 and response.json() == {}
    # "sending photo..." at once, then the largest rendition that fits, fetched and downloaded.
    assert api.methods()[:3] == ["sendChatAction", "getFile", "download"] and api.calls[1][1]["file_id"] == "pink"
    assert api.calls[0][1] == {"chat_id": str(CHAT), "action": "upload_photo"}
    # One album of the three results, not a message each.
    assert "sendPhoto" not in api.methods() and len(api.sent("sendMediaGroup")) == 1
    [params] = api.sent("sendMediaGroup")
    pictures = album(params)
    pink = shop["Pink-Lady"]
    assert params["chat_id"] == str(CHAT) and "reply_parameters" not in params  # a private chat: no quote
    assert len(pictures) == 3 and {p["type"] for p in pictures} == {"photo"}
    title, link = pictures[0]["caption"].split("\n")
    assert title.startswith(f"1. Pink Lady — {pink.pk}.90 SEK · ") and title.endswith("% match")
    assert link == f"http://testserver/products/{pink.pk}/"
    assert [p["caption"].split("\n")[0][:2] for p in pictures] == ["1.", "2.", "3."]
    # testserver is no host Telegram can reach: the thumbnails are uploaded from the storage.
    assert all(p["bytes"][:2] == b"\xff\xd8" for p in pictures)  # JPEGs


def test_on_a_public_host_telegram_fetches_the_thumbnails_itself(client, api, shop, settings):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "SITE_URL": "https://shop.example"}
    post(client, photo("pink", add_photo(api, "pink", "Pink-Lady")))
    pictures = album(api.sent("sendMediaGroup")[0])
    assert all(p["media"].startswith("https://shop.example/media/visual_search/thumbnails/") for p in pictures)


def test_a_host_telegram_cannot_fetch_from_is_uploaded_from_storage_and_remembered(client, api, shop, settings, caplog):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "SITE_URL": "https://shop.example"}
    api.fail("sendMediaGroup", "400:Bad Request: failed to get HTTP URL content")
    size = add_photo(api, "pink", "Pink-Lady")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        post(client, photo("pink", size))
    first, second = (album(params) for params in api.sent("sendMediaGroup"))
    assert first[0]["media"].startswith("https://") and all("bytes" in p for p in second)
    assert "could not fetch the pictures" in caplog.text
    assert [m["text"] for m in api.sent("sendMessage")] in ([], [replies.unsure()])  # no results as text
    # The next search does not try the URLs again.
    post(client, photo("pink", size))
    assert len(api.sent("sendMediaGroup")) == 3 and all("bytes" in p for p in album(api.sent("sendMediaGroup")[-1]))


def test_a_single_result_is_one_photo(client, api, shop, settings):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "RESULTS": 1}
    post(client, photo("pink", add_photo(api, "pink", "Pink-Lady")))  # an album needs two
    [sent] = api.sent("sendPhoto")
    assert sent["caption"].startswith("1. Pink Lady — ") and not api.sent("sendMediaGroup")


def test_in_a_group_the_answers_reply_to_the_customer_s_photo(client, api, shop):
    body = photo("pink", add_photo(api, "pink", "Pink-Lady"))
    body["message"].update(message_id=77, chat={"id": -100123, "type": "supergroup", "title": "Shop fans"})
    post(client, body)
    text = update({"text": "/help", "message_id": 78, "chat": {"id": -100123, "type": "group", "title": "Fans"}})
    post(client, text)
    replies_to = [json.loads(params["reply_parameters"])["message_id"] for params in api.sent()]
    assert replies_to[-1] == 78 and set(replies_to[:-1]) == {77} and api.sent("sendMediaGroup")


def test_an_image_sent_as_a_file_gets_results(client, api, shop):
    size = add_photo(api, "banana-doc", "Banana")
    post(client, update({"document": {"file_id": "banana-doc", "file_unique_id": "d", "file_name": "IMG_1.JPG",
                                      "mime_type": "image/jpeg", "file_size": size}}))
    assert album(api.sent("sendMediaGroup")[0])[0]["caption"].startswith("1. Banana — ")


def test_an_avif_image_sent_as_a_file_gets_results(client, api, shop):
    """An AVIF (a CDN's or an image tool's export) is fetched and searched, where it was refused unread."""
    buffer = io.BytesIO()
    Image.open(catalogue_image("Banana")).convert("RGB").save(buffer, "AVIF")
    api.files["banana-avif"] = buffer.getvalue()
    post(client, update({"document": {"file_id": "banana-avif", "file_unique_id": "a", "file_name": "banana.avif",
                                      "mime_type": "image/avif", "file_size": len(buffer.getvalue())}}))
    assert album(api.sent("sendMediaGroup")[0])[0]["caption"].startswith("1. Banana — ")


@pytest.mark.parametrize("message, answer", [
    ({"text": "hello"}, replies.help_text()),
    ({"text": "/start"}, replies.welcome()),
    ({"text": "/help"}, replies.usage()),
    ({"text": "/help@ShopBot"}, replies.usage()),
    ({"sticker": {"file_id": "s", "file_unique_id": "s", "width": 512, "height": 512, "is_animated": False,
                  "is_video": False, "type": "regular"}}, replies.sticker()),
    ({"document": {"file_id": "pdf", "file_unique_id": "f", "file_name": "list.pdf", "mime_type": "application/pdf",
                   "file_size": 5000}}, replies.not_an_image()),
    ({"voice": {"file_id": "v", "file_unique_id": "v", "duration": 2}}, replies.help_text()),
])
def test_what_is_not_a_photo_gets_a_helpful_sentence_and_nothing_is_fetched(client, api, message, answer):
    assert post(client, update(message)).status_code == 200
    assert api.methods() == ["sendMessage"]
    assert api.sent()[0] == {"chat_id": str(CHAT), "text": answer}


def test_help_says_how_to_search_and_start_greets():
    assert replies.usage() != replies.welcome()
    assert "Crop" in replies.usage() and "% match" in replies.usage() and "JPEG" in replies.usage()


@pytest.mark.parametrize("language, expected", [("de", "de"), ("fr-CA", "fr"), ("pt-br", "pt-br"), ("xx", "en-us"), ("", "en-us")])
def test_the_bot_answers_in_the_customers_language_when_the_shop_offers_it(client, api, settings, language, expected):
    settings.LANGUAGE_CODE = "en-us"
    body = update({"text": "/start"})
    body["message"]["from"]["language_code"] = language
    assert post(client, body).status_code == 200
    with translation.override(expected):
        welcome = replies.welcome()
    assert api.sent()[0]["text"] == welcome
    if expected in ("de", "fr"):  # shipped catalogues: not the English words
        assert welcome != replies.welcome()


def test_a_shop_that_offers_only_english_answers_in_english(client, api, settings):
    settings.LANGUAGE_CODE, settings.LANGUAGES = "en", [("en", "English")]
    body = update({"text": "/start"})
    body["message"]["from"]["language_code"] = "de"
    post(client, body)
    with translation.override("en"):
        assert api.sent()[0]["text"] == replies.welcome() == "Hello! Send me a photo of a product and I will find it in our shop."


def test_a_photo_over_the_size_limit_is_refused_before_any_download(client, api, settings):
    post(client, photo("huge", 25 * 1024 * 1024, thumbnail=False))  # over getFile's 20 MB
    # The app's MAX_UPLOAD_BYTES applies too: 10 MB in the tests' settings.
    post(client, update({"document": {"file_id": "big", "file_unique_id": "b", "mime_type": "image/png",
                                      "file_size": 12 * 1024 * 1024}}))
    assert api.methods() == ["sendMessage", "sendMessage"]
    assert [m["text"] for m in api.sent()] == [replies.too_large(10 * 1024 * 1024)] * 2
    assert "at most 10 MB" in api.sent()[0]["text"]


def test_a_file_getfile_reports_too_large_is_refused_unread(client, api):
    api.files["sly"] = b"x"
    api.file_sizes["sly"] = 30 * 1024 * 1024  # the update did not say; getFile does
    post(client, update({"document": {"file_id": "sly", "file_unique_id": "s", "mime_type": "image/jpeg"}}))
    assert api.methods() == ["sendChatAction", "getFile", "sendMessage"] and "too large" in api.sent()[0]["text"]


def test_a_file_that_is_not_really_an_image_gets_the_app_message(client, api, shop):
    api.files["fake"] = b"this is not a picture"
    post(client, update({"document": {"file_id": "fake", "file_unique_id": "f", "mime_type": "image/jpeg", "file_size": 21}}))
    assert api.methods() == ["sendChatAction", "getFile", "download", "sendMessage"]
    assert api.sent()[0]["text"] == replies.unreadable() == "I could not read that image. Send a photo of the product (JPEG, PNG or WebP)."


def test_a_photo_in_a_burst_beyond_max_concurrent_searches_is_told_to_come_again(client, api, shop, settings, monkeypatch, caplog):
    """The bot's thread (or worker) waits for a slot as a web search does, then says so: not "something
    went wrong", and no traceback in the log for a burst."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_CONCURRENT_SEARCHES": 1}
    monkeypatch.setattr(capacity, "WAIT_SECONDS", 0.2)
    size = add_photo(api, "pink", "Pink-Lady")
    with caplog.at_level(logging.WARNING, logger="visual_search"), capacity.search_slot():
        post(client, photo("pink", size))
    assert api.methods()[-1] == "sendMessage" and api.sent()[-1]["text"] == replies.busy()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_blank_photo_is_asked_again_not_matched(client, api, shop, jpeg_bytes):
    """A lens cap's photo is one colour all over: "that looks blank", not products at 44 %."""
    api.files["cap"] = jpeg_bytes((4, 4, 4), (640, 480))
    post(client, update({"photo": [{"file_id": "cap", "file_unique_id": "c", "width": 640, "height": 480, "file_size": 2000}]}))
    assert api.methods() == ["sendChatAction", "getFile", "download", "sendMessage"]
    assert api.sent()[0]["text"] == replies.blank() == "That photo looks blank. Take one with the product in view."


def test_a_refused_kind_of_file_is_named_in_the_customer_s_language(client, api, shop, settings):
    """A drawing sent as a file, by a German customer: German words, not the API's English detail."""
    api.files["plan"] = b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'
    body = update({"document": {"file_id": "plan", "file_unique_id": "p", "mime_type": "image/svg+xml", "file_size": 45}})
    body["message"]["from"]["language_code"] = "de"
    post(client, body)
    with translation.override("de"):
        expected = replies.unreadable("SVG")
    assert api.sent()[0]["text"] == expected and expected.startswith("SVG-Dateien")
    assert api.methods() == ["sendMessage"]  # refused as the update announced it: nothing downloaded


@pytest.mark.parametrize("document", [
    {"mime_type": "image/svg+xml", "file_name": "logo.svg"},
    {"file_name": "plan.SVG"},  # no type: its name says it
    {"mime_type": "image/vnd.adobe.photoshop", "file_name": "mockup.psd"},
])
def test_an_unsupported_image_format_is_refused_before_any_download(client, api, document):
    post(client, update({"document": {"file_id": "doc", "file_unique_id": "d", "file_size": 4000, **document}}))
    assert api.methods() == ["sendMessage"]
    text = api.sent()[0]["text"]
    assert text == replies.unreadable(text.split(" ")[0]) and "JPEG, PNG or WebP" in text


@pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x"])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_sent(client, api, secret):
    response = post(client, update({"text": "hello"}), secret=secret)
    assert response.status_code == 403
    assert api.calls == []


def test_without_a_configured_secret_everything_is_refused(client, api, settings):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "SECRET": None}
    assert post(client, update({"text": "hi"}), secret="").status_code == 403
    assert api.calls == []


def test_other_requests_are_not_work(client, api):
    assert client.get(WEBHOOK).status_code == 405
    bad = client.post(WEBHOOK, data="{nope", content_type="application/json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
    assert bad.status_code == 400
    edited = {"update_id": 1, "edited_message": {"message_id": 1, "date": 0, "chat": {"id": CHAT, "type": "private"}}}
    assert post(client, edited).status_code == 200
    assert api.calls == []


def test_a_repeated_update_id_is_answered_once(client, api):
    body = update({"text": "hello"})
    assert [post(client, body).status_code for _ in range(3)] == [200, 200, 200]
    assert api.methods() == ["sendMessage"]


def test_a_chat_over_its_rate_is_told_to_wait_once(client, api, settings):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "RATE": "2/min"}
    for _ in range(5):
        assert post(client, update({"text": "hello"})).status_code == 200
    assert [m["text"] for m in api.sent()] == [replies.help_text(), replies.help_text(), replies.please_wait()]
    # Another chat has its own count.
    other = update({"text": "hello"})
    other["message"]["chat"]["id"] = 7
    post(client, other)
    assert api.sent()[-1] == {"chat_id": "7", "text": replies.help_text()}


def test_a_429_is_retried_once_after_retry_after(client, api):
    api.fail("sendMessage", "429:1")
    post(client, update({"text": "hello"}))
    (first, _, at), (second, params, again) = api.calls
    assert first == second == "sendMessage" and params["text"] == replies.help_text()
    assert again - at >= 0.95


def test_a_429_longer_than_the_cap_is_not_waited_for(client, api, caplog):
    api.fail("sendMessage", "429:3600")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, update({"text": "hello"})).status_code == 200
    assert time.monotonic() - started < 5 and api.methods() == ["sendMessage"]
    assert "Flood control exceeded" in caplog.text


def test_a_second_429_gives_up(client, api, caplog):
    api.fail("sendMessage", "429:1", "429:1")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, update({"text": "hello"})).status_code == 200
    assert api.methods() == ["sendMessage", "sendMessage"] and "Flood control" in caplog.text


def test_a_400_is_logged_and_nothing_breaks(client, api, caplog):
    api.fail("sendMessage", "400")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, update({"text": "hello"})).status_code == 200
    assert "chat not found" in caplog.text.lower()


def test_pictures_telegram_refuses_go_out_as_one_text(client, api, shop, caplog):
    size = add_photo(api, "pink", "Pink-Lady")
    api.fail("sendMediaGroup", "400:Bad Request: PHOTO_INVALID_DIMENSIONS")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        post(client, photo("pink", size))
    [text] = [m["text"] for m in api.sent("sendMessage") if m["text"].startswith("1. ")]
    assert text.startswith("1. Pink Lady — ") and "\n\n2. " in text and "\n\n3. " in text
    assert len(api.sent("sendMediaGroup")) == 1 and "refused the pictures" in caplog.text


def test_a_photo_too_large_in_full_is_searched_in_a_smaller_rendition(client, api, shop):
    api.files["thumb"] = catalogue_image("Pink-Lady").read_bytes()
    post(client, photo("huge", 25 * 1024 * 1024))
    assert api.calls[1][1]["file_id"] == "thumb" and len(album(api.sent("sendMediaGroup")[0])) == 3


def test_a_lost_connection_is_logged_and_the_webhook_still_answers(client, api, shop, caplog):
    size = add_photo(api, "pink", "Pink-Lady")
    api.fail("getFile", "drop")
    api.fail("sendMessage", "drop")
    with caplog.at_level(logging.WARNING, logger="visual_search"):
        assert post(client, photo("pink", size)).status_code == 200  # getFile: the failure reply is lost too
        assert post(client, update({"text": "hello"})).status_code == 200
    assert api.methods() == ["sendChatAction", "getFile", "sendMessage", "sendMessage"]
    assert "search by photo for chat ***4242 failed" in caplog.text and "NetworkError" in caplog.text


def test_the_webhook_answers_before_the_reply_is_sent_from_a_thread(client, api, settings):
    """The reply is held at the fake API until the webhook has answered: a webhook that waited for it
    would answer after the client's TIMEOUT (30 s). Measured against a reply taking 1 s, the answer
    had to come within 0.9 s, which a loaded machine's scheduling could miss."""
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "BACKGROUND": None, "TIMEOUT": 30}  # no broker: a thread
    api.held["sendMessage"] = held = threading.Event()
    started = time.monotonic()
    try:
        assert post(client, update({"text": "hello"})).status_code == 200
        answered = time.monotonic() - started
    finally:
        held.set()
    assert answered < 10
    assert api.wait_for("sendMessage")[0]["text"] == replies.help_text()


def test_with_celery_the_task_gets_json_safe_arguments(client, api, shop, settings, monkeypatch):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}  # the project's switch: queue.use_celery()
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "BACKGROUND": None}
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **options: sent.append((name, json.loads(json.dumps(args)))))
    size = add_photo(api, "pink", "Pink-Lady")
    assert post(client, photo("pink", size)).status_code == 200
    assert api.calls == []  # nothing done in the web process
    [(name, args)] = sent
    assert name == HANDLE_MESSAGE
    handle_message(*args)  # as the worker runs it
    assert album(api.sent("sendMediaGroup")[0])[0]["caption"].startswith("1. Pink Lady — ")


def test_a_broker_that_is_down_falls_back_to_a_thread(api, settings, monkeypatch):
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "BACKGROUND": "celery"}

    def down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(queue, "send", down)

    background.run(TelegramMessenger(), IncomingMessage(chat_id="9", kind="text", text="hi"))
    assert api.wait_for("sendMessage")[0] == {"chat_id": "9", "text": replies.help_text()}


def test_messages_travel_as_dicts():
    message = IncomingMessage(chat_id="1", kind=PHOTO, event_id="5", file_id="f", file_size=10, mime_type="image/png")
    assert IncomingMessage.from_dict(json.loads(json.dumps(message.as_dict()))) == message


def run_command(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(Command(), *args, stdout=out)
    return out.getvalue()


def test_the_command_sets_shows_and_deletes_the_webhook(api):
    url = "https://shop.example/telegram/webhook/"
    assert url in run_command("set-webhook", url)
    name, params, _ = api.calls[-1]
    assert name == "setWebhook" and params["url"] == url and params["secret_token"] == SECRET
    assert json.loads(params["allowed_updates"]) == ["message"]
    info = run_command("info")
    assert url in info and "pending updates: 2" in info and "Connection refused" in info
    run_command("delete-webhook", "--drop-pending-updates")
    assert api.calls[-1][0] == "deleteWebhook" and api.calls[-1][1]["drop_pending_updates"] == "true"


def test_the_command_refuses_a_url_that_is_not_the_webhook(api):
    calls = len(api.calls)
    with pytest.raises(CommandError, match="serves it at /telegram/webhook/"):
        run_command("set-webhook", "https://shop.example/wrong/path/")
    assert len(api.calls) == calls  # Telegram was not told
    # Without its slash, or behind a proxy's prefix, it is the webhook: set, and answered.
    for url in ("https://shop.example/telegram/webhook", "https://shop.example/shop/telegram/webhook/"):
        assert url in run_command("set-webhook", url)
    assert "dropped" in run_command("delete-webhook", "--drop-pending-updates")


def test_the_webhook_answers_without_its_slash(client):
    response = client.post(WEBHOOK.rstrip("/"), data=json.dumps({"update_id": 1}), content_type="application/json",
                           HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
    assert response.status_code == 200  # not APPEND_SLASH's redirect, which Telegram does not follow


def test_the_command_refuses_http_and_reports_api_errors(api):
    with pytest.raises(CommandError, match="HTTPS"):
        run_command("set-webhook", "http://shop.example/telegram/webhook/")
    api.fail("getWebhookInfo", "400")
    with pytest.raises(CommandError, match="(?i)chat not found"):
        run_command("info")


def test_the_checks(settings):
    assert checks.check_settings() == []
    settings.VISUAL_SEARCH_TELEGRAM = {"RESULTS": 0, "RATE": "often", "BACKGROUND": "cron", "API_URL": "api", "TOKN": "x"}
    found = {(m.id, m.msg.split("]")[0]) for m in checks.check_settings()}
    assert found == {
        ("visual_search_telegram.E001", "VISUAL_SEARCH_TELEGRAM['TOKEN'"),
        ("visual_search_telegram.E002", "VISUAL_SEARCH_TELEGRAM['SECRET'"),
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['RESULTS'"),
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['RATE'"),
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['BACKGROUND'"),
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['API_URL'"),
        ("visual_search_telegram.W001", "VISUAL_SEARCH_TELEGRAM['TOKN'"),
    }
    settings.VISUAL_SEARCH_TELEGRAM = {"TOKEN": TOKEN, "SECRET": "has spaces!"}
    assert [m.id for m in checks.check_settings()] == ["visual_search_telegram.E002"]


def test_the_checks_name_the_key_its_default_and_the_docs(settings):
    """The words every messenger's checks share (visual_search.contrib.messaging.checks), in Telegram's."""
    settings.VISUAL_SEARCH_TELEGRAM = {"TOKEN": TOKEN, "SECRET": SECRET, "API_URL": "api", "TIMEOUT": -1, "COLOUR": "x"}
    assert sorted((m.id, m.msg, m.hint) for m in checks.check_settings()) == [
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['API_URL'] = 'api': expected an absolute URL such as "
         "'https://api.telegram.org'.", "Leave it out for the default, 'https://api.telegram.org'."),
        ("visual_search_telegram.E003", "VISUAL_SEARCH_TELEGRAM['TIMEOUT'] = -1: expected a number of seconds, at least 0.",
         "Leave it out for the default, 10."),
        ("visual_search_telegram.W001", "VISUAL_SEARCH_TELEGRAM['COLOUR'] is not a setting.",
         "Remove it (docs/telegram.md lists the settings)."),
    ]


def test_a_misspelt_setting_is_named_with_the_closest_one_and_one_full_stop(settings):
    """The closest setting is suggested as the core checks do, with no stray full stop ("?.")."""
    settings.VISUAL_SEARCH_TELEGRAM = {"TOKEN": TOKEN, "SECRET": SECRET, "TIMEOT": 5}
    [warning] = [m for m in checks.check_settings() if m.id == "visual_search_telegram.W001"]
    assert warning.msg == "VISUAL_SEARCH_TELEGRAM['TIMEOT'] is not a setting; did you mean 'TIMEOUT'?"


def test_a_product_the_shop_hides_is_never_sent(client, api, shop, settings):
    """The bot answers as the shop's site answers an anonymous customer (VISIBILITY), also for a
    message handled without a site URL (a task queued by shop code, background.run's default),
    which searched the whole catalogue: the hidden product came first, named and pictured."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "VISIBILITY": "tests.testapp.visibility.in_stock"}
    shop["Pink-Lady"].in_stock = False
    shop["Pink-Lady"].save(update_fields=["in_stock"])
    size = add_photo(api, "pink", "Pink-Lady")
    assert post(client, photo("pink", size)).status_code == 200
    webhook = api.sent()
    assert "Pink Lady" not in str(webhook) and "Granny Smith" in str(webhook)
    api.calls.clear()
    handle(TelegramMessenger(), IncomingMessage(chat_id=str(CHAT), kind=PHOTO, event_id="7", file_id="pink", file_size=size))
    unhosted = api.sent()
    assert "Pink Lady" not in str(unhosted) and "Granny Smith" in str(unhosted)


def test_a_caption_writes_a_number_price_as_the_web_cards_do():
    """A caption wrote the price as the JSON had it: 12.9 read "12.9 SEK" where the card read "12.90",
    and a Decimal of yen "1200.00 JPY" where the card read "1200"."""
    from decimal import Decimal

    with translation.override("en"):
        assert replies.caption({"name": "Tea", "price": 12.9, "currency": "SEK"}, 1) == "1. Tea — 12.90 SEK"
        assert replies.caption({"name": "Tea", "price": Decimal("1200.00"), "currency": "JPY"}, 2) == "2. Tea — 1200 JPY"
        assert replies.caption({"name": "Tea", "price": "12,90 €"}, 3) == "3. Tea — 12,90 €"  # a string as given
    with translation.override("de"):
        assert replies.caption({"name": "Tee", "price": 12.9, "currency": "EUR"}, 1) == "1. Tee — 12,90 EUR"


def test_the_bot_s_token_stays_out_of_the_logs_of_a_project_logging_at_info(client, api, shop, caplog):
    """httpx logs each request's URL at INFO, and the Bot API's URLs hold the token (/bot<token>/getFile);
    python-telegram-bot logs them at DEBUG."""
    size = add_photo(api, "pink", "Pink-Lady")
    with caplog.at_level(logging.DEBUG):
        assert post(client, photo("pink", size)).status_code == 200
    assert "/bot<TOKEN>/getFile" in caplog.text  # the lines stay, the token goes
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


def test_python_telegram_bot_s_debug_lines_name_the_call_not_the_customer(client, api, shop, caplog):
    """At DEBUG, python-telegram-bot logged each call's parameters (the chat id) and what it returned
    (a sent message: the chat, the customer's first name). The endpoint stays in the line."""
    size = add_photo(api, "pink", "Pink-Lady")
    with caplog.at_level(logging.DEBUG, logger="telegram"):
        assert post(client, photo("pink", size)).status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "telegram.Bot"]
    assert any(line.startswith("Calling Bot API endpoint `getFile`") for line in lines), lines
    calls = [line for line in lines if "Bot API endpoint" in line]
    assert calls and all("<not logged: it names the customer>" in line for line in calls), calls
    assert not [line for line in lines if str(CHAT) in line or "Ann" in line], lines


@pytest.mark.parametrize("site_url", [None, "https://shop.example/shop/"])
def test_under_a_path_prefix_a_worker_s_reply_links_below_it(api, shop, settings, monkeypatch, site_url):
    """A shop under /shop (uvicorn --root-path, a proxy's SCRIPT_NAME): Django knows the prefix in the
    webhook's thread only, and the worker's (or thread's) reply linked /products/..., a 404."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True, "RESULT_ADAPTER": "tests.telegram.adapters.ReversedLinks"}
    settings.VISUAL_SEARCH_TELEGRAM = {**settings.VISUAL_SEARCH_TELEGRAM, "BACKGROUND": None, "SITE_URL": site_url}
    sent = []
    monkeypatch.setattr(queue, "send", lambda name, args, **options: sent.append(json.loads(json.dumps(args))))
    body = json.dumps(photo("pink", add_photo(api, "pink", "Pink-Lady"))).encode()
    response = asgi_request(WEBHOOK, "POST", root_path="/shop", body=body,
                            headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET})
    assert response.status == 200 and sent
    handle_message(*sent[0])  # as the worker runs it, where Django's prefix is "/"
    link = album(api.sent("sendMediaGroup")[0])[0]["caption"].split("\n")[1]
    site = site_url or "http://testserver/shop/"
    assert link == f"{site}products/{shop['Pink-Lady'].pk}/"
    assert reverse("product", args=[1]) == "/products/1/"  # the worker's own prefix is left as it was


def test_a_site_url_without_the_prefix_keeps_force_script_name_s(api, shop, settings):
    settings.FORCE_SCRIPT_NAME = "/shop"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "RESULT_ADAPTER": "tests.telegram.adapters.ReversedLinks"}
    handle_message(TelegramMessenger.path(), incoming_message(photo("pink", add_photo(api, "pink", "Pink-Lady")), 10**7).as_dict(),
                   "https://shop.example")
    link = album(api.sent("sendMediaGroup")[0])[0]["caption"].split("\n")[1]
    assert link == f"https://shop.example/shop/products/{shop['Pink-Lady'].pk}/"
