"""Customers read the widget, the search page, the cards and the bot in the shop's language.

``visual_search/locale`` ships German and French. The widget's script gets its words from the
server (``data-vs-messages``), so a shop needs no JavaScript catalogue. The catalogue checks
(complete, compiled, every marked string in it) need GNU gettext (``apt-get install gettext``,
which .ci/run does); the browser test needs Debian's chromium, as tests/test_browser.py.
"""

from __future__ import annotations

import gettext
import html as html_lib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import Context, Template
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from tests.conftest import catalogue_image
from tests.test_browser import browser, demo_server, phone, serve, val_photo  # noqa: F401 (fixtures)
from visual_search.widget import match_percent, results_found

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "visual_search"
LOCALES = sorted(p.name for p in (PACKAGE / "locale").iterdir() if (p / "LC_MESSAGES" / "django.po").exists())
MSGFMT = shutil.which("msgfmt")
needs_gettext = pytest.mark.skipif(MSGFMT is None, reason="GNU gettext is not installed (apt-get install gettext)")


def widget(**context) -> str:
    return Template("{% load visual_search %}{% visual_search_widget %}").render(Context(context))


def messages_of(page: str) -> dict:
    return json.loads(html_lib.unescape(re.search(r'data-vs-messages="([^"]*)"', page).group(1)))


def test_german_and_french_ship():
    assert {"de", "fr"} <= set(LOCALES)
    for language in LOCALES:
        assert (PACKAGE / "locale" / language / "LC_MESSAGES" / "django.mo").exists(), language


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_widget_speaks_the_active_language(rf, language):
    english = widget(request=rf.get("/"))
    with translation.override(language):
        page = widget(request=rf.get("/"))
        words = [_("Search by photo"), _("Choose a photo"), _("Take a photo"), _("Whole photo"), _("Search part of the photo")]
        messages = messages_of(page)
        two = results_found(2)
    for word in words:
        assert word in page and word not in english, word
    assert f'lang="{language}"' in page and 'lang="en' in english
    assert "Search by photo" not in page and "Choose a photo" not in page
    # The script's words: the same catalogue, with the holes it fills in kept.
    assert messages["results"]["2"] == two and two != "2 results, best match first."
    assert messages["required"] != messages_of(english)["required"]
    assert "{percent}" in messages["match"] and messages["match"] != "{percent}% match"
    assert all(hole in messages["box_where"] for hole in ("{x0}", "{x1}", "{y0}", "{y1}"))
    # The box's edges as the language writes a percentage: "25\u00a0%" in German and French.
    assert messages["percent"] == "{n}\u00a0%" and messages_of(english)["percent"] == "{n}%"
    # One status line per count the widget can show: its limit, else the API's default.
    assert set(messages["results"]) == {str(n) for n in range(1, 13)}
    with translation.override(language):
        assert set(messages_of(Template("{% load visual_search %}{% visual_search_widget limit=4 %}").render(Context({})))["results"]) == {"1", "2", "3", "4"}


@pytest.mark.parametrize("score, shown", [(0.874, "87% match"), (0.875, "88% match"), (0.005, "1% match"), (0.004, "<1% match"),
                                          (0.0, "0% match"), (1.0, "100% match"), (None, "")])
def test_a_card_reads_a_chance_that_rounds_to_nothing_as_under_one_percent(score, shown):
    assert match_percent(score) == shown


def test_a_limit_that_is_not_a_number_still_renders(rf):
    page = Template("{% load visual_search %}{% visual_search_widget limit='many' %}").render(Context({"request": rf.get("/")}))
    assert set(messages_of(page)["results"]) == {str(n) for n in range(1, 13)}


def test_cards_and_status_line_in_german():
    items = [{"name": "Banane", "url": "/p/1/", "image_url": "", "score": 0.874}, {"name": "Mango", "url": "/p/2/", "image_url": "", "score": 0.05}]
    with translation.override("de"):
        status = render_to_string("visual_search/status.html", {"items": items, "confident": True})
        unsure = render_to_string("visual_search/status.html", {"items": items, "confident": False})
        card = render_to_string("visual_search/result_card.html", {"item": {**items[0], "available": False}})
        expected = (_("{percent}% match").format(percent=87), _("Out of stock"),
                    _("No confident match. Possible matches, best first."))
        two = results_found(2)
    assert status == f"<span>{two}</span>" and "results" not in status  # its words isolated in their direction (widget.css)
    assert expected[0] in card and "match" not in card and expected[1] in card
    assert expected[2] in unsure and "Possible matches" not in unsure


def test_the_search_page_declares_its_language(client, settings):
    settings.LANGUAGE_CODE = "fr"
    page = client.get("/search-by-photo/").content.decode()
    assert '<html lang="fr">' in page
    with translation.override("fr"):
        assert f"<title>{_('Search by photo')}</title>" in page


@pytest.mark.django_db(transaction=True)
def test_server_rendered_search_in_german(client, settings, make_product):
    settings.LANGUAGE_CODE = "de"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None}
    cache.clear()
    for name in ("Oatly-Oat-Milk", "Arla-Standard-Milk"):
        make_product(name.replace("-", " "), catalogue_image(name))
    photo = SimpleUploadedFile("milk.jpg", catalogue_image("Oatly-Oat-Milk").read_bytes(), content_type="image/jpeg")
    page = client.post("/search-by-photo/", {"image": photo}).content.decode()
    status = page.split('data-vs-status role="status" aria-live="polite">')[1].split("</p>")[0]
    with translation.override("de"):
        assert status in (f"<span>{results_found(2)}</span>",
                          f'<span class="vs-unsure">{_("No confident match. Possible matches, best first.")}</span>')
        match = re.escape(_("{percent}% match")).replace(re.escape("{percent}"), r"(?:\d+|&lt;1)")
    assert len(re.findall(match, page)) == 2
    # Without a photo: the customer's words for the error, in German.
    with translation.override("de"):
        required = _("Choose a photo first.")
    assert required != "Choose a photo first." and required in client.post("/search-by-photo/", {}).content.decode()
    # A refused kind of file is named in German too (the API's detail, for developers, is English).
    svg = SimpleUploadedFile("plan.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    assert "SVG-Dateien werden hier nicht angenommen." in client.post("/search-by-photo/", {"image": svg}).content.decode()


# -- the catalogues ------------------------------------------------------------------------------


def compile_catalogue(po: Path, mo: Path) -> str:
    """msgfmt's statistics for ``po`` (compiled to ``mo``); fails on a format error."""
    done = subprocess.run([MSGFMT, "--check", "--statistics", "-o", str(mo), str(po)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr


@needs_gettext
@pytest.mark.parametrize("language", LOCALES)
def test_each_catalogue_is_complete_and_its_mo_compiled_from_it(tmp_path, language):
    folder = PACKAGE / "locale" / language / "LC_MESSAGES"
    statistics = compile_catalogue(folder / "django.po", tmp_path / "django.mo")
    assert "untranslated" not in statistics and "fuzzy" not in statistics, statistics
    with open(tmp_path / "django.mo", "rb") as fresh, open(folder / "django.mo", "rb") as shipped:
        assert gettext.GNUTranslations(shipped)._catalog == gettext.GNUTranslations(fresh)._catalog, (
            f"visual_search/locale/{language}/LC_MESSAGES/django.mo is stale: run `django-admin compilemessages` in visual_search/")


@needs_gettext
def test_every_marked_string_is_translated(tmp_path):
    """makemessages over a copy of the package adds no string the catalogues lack, and leaves none fuzzy."""
    if shutil.which("xgettext") is None:
        pytest.skip("xgettext is not installed (apt-get install gettext)")
    copy = tmp_path / "visual_search"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT), "PATH": str(Path(MSGFMT).parent) + ":/usr/bin:/bin"}
    # As `django-admin makemessages` run in the package: not `python -m django`, whose first path entry
    # (the package folder) would make visual_search/queue.py shadow the standard library's queue.
    admin = "import sys; del sys.path[0]; from django.core.management import execute_from_command_line as run; run(['django-admin', *sys.argv[1:]])"
    arguments = [sys.executable, "-c", admin, "makemessages", "--no-obsolete", *[f"-l{language}" for language in LOCALES]]
    subprocess.run(arguments, cwd=copy, env=env, check=True, capture_output=True, timeout=300)
    for language in LOCALES:
        statistics = compile_catalogue(copy / "locale" / language / "LC_MESSAGES" / "django.po", tmp_path / f"{language}.mo")
        assert "untranslated" not in statistics and "fuzzy" not in statistics, (
            f"{language}: {statistics.strip()}; run `django-admin makemessages -l {language}` in visual_search/ and translate")


def shipped_catalogue(language: str) -> dict:
    """The compiled catalogue as Django reads it: msgid (or (msgid, n), or "context\x04msgid") -> msgstr."""
    with open(PACKAGE / "locale" / language / "LC_MESSAGES" / "django.mo", "rb") as shipped:
        return {key: text for key, text in gettext.GNUTranslations(shipped)._catalog.items() if key != ""}  # not the header


def test_french_is_written_as_french_typography_wants():
    """French puts a non-breaking space before : ; ? ! and inside « », and writes the apostrophe
    as ’ (Django's own French does both). Written quickly, half the catalogue had plain spaces: on a
    phone a line could begin with the colon or the closing », and the bot's help ended its quote
    with "»);" glued to the semicolon; "l'image" and "l’image" stood side by side."""
    rules = {"plain space before": r" [:;?!»]", "plain space after": r"« ", "no space before": r"[^\s\u00a0][;?!»]|[^\s\u00a0]:(?=\s)",
             "straight apostrophe": r"\w'\w"}
    wrong = [(rule, text) for text in shipped_catalogue("fr").values() for rule, pattern in rules.items() if re.search(pattern, text)]
    assert not wrong, wrong


@pytest.mark.parametrize("language", ["de", "fr"])
def test_a_percentage_keeps_its_sign(language):
    """German and French write "87\u00a0%": with a plain space a line could end before the sign."""
    wrong = [text for text in shipped_catalogue(language).values() if re.search(r"\S (?:%%|%)(?![(a-z])", text)]
    assert not wrong, wrong


def test_french_words_agree_and_name_one_thing_one_way():
    """An image's status is feminine ("Prête", "Non indexée", not "Prêt"); a version is switched
    ("basculement"), rolled back to ("revenir"), its held-out photos are the evaluation ones."""
    with translation.override("fr"):
        assert (_("Ready"), _("Not indexed")) == ("Prête", "Non indexée")
    texts = " ".join(shipped_catalogue("fr").values())
    for stray in ("Rien à annuler", "mises de côté", "Un changement est déjà", "Le passage à", "que décrivent les réglages",
                  "prenez-le de près", "articles qui lui ressemblent", "toutes les %(seconds)s seconde "):
        assert stray not in texts, stray


def test_german_names_one_thing_one_way_and_says_sie_only_to_the_reader():
    """"Sie" after a colon is the reader: "2 mögliche Duplikate verworfen: Sie werden nicht erneut
    markiert" told staff they would not be flagged. One word per thing: "indexiert" (not also
    "indiziert"), "Suchoptimierung" for the whitening (the English word only in brackets)."""
    with translation.override("de"):
        dismissed = ngettext("%d possible duplicate dismissed: it will not be flagged again.",
                             "%d possible duplicates dismissed: they will not be flagged again.", 2) % 2
        cancelled = ngettext("Cancel requested for %d version: it stops within seconds; searches are not affected.",
                             "Cancel requested for %d versions: they stop within seconds; searches are not affected.", 2) % 2
    assert ": Sie " not in dismissed and ": Sie " not in cancelled, (dismissed, cancelled)
    texts = " ".join(shipped_catalogue("de").values())
    assert "indiziert" not in texts and "Whitenings" not in texts
    assert texts.count("Whitening") == texts.count("(Whitening)"), re.findall(r".{40}Whitening.{20}", texts)
    for stray in ("gemessen ehrlich", "Kalibriert an ", "desto mehr sind die Werte", "ein Foto und ein Bild"):
        assert stray not in texts, stray


# -- in a browser: the script's words ------------------------------------------------------------


@pytest.fixture(scope="module")
def german_demo(demo_server):
    with serve({**demo_server.env, "DEMO_SHOP_LANGUAGE": "de"}) as served:
        yield served


@pytest.mark.browser
def test_the_script_speaks_german(german_demo, browser):
    with translation.override("de"):
        hint, searching = _("Take or choose a photo of a product."), _("Searching…")
        match = re.escape(_("{percent}% match")).replace(re.escape("{percent}"), r"(?:\d+|<1)")
        statuses = {results_found(n)
                    for n in range(1, 13)} | {_("No confident match. Possible matches, best first.")}
    context = phone(browser)
    page = context.new_page()
    page.goto(f"{german_demo}/search/")
    assert hint in page.locator("#vs-hint").inner_text()
    assert page.locator("#vs").get_attribute("lang") == "de"  # the demo's own pages stay English
    page.set_input_files("#vs-file", str(val_photo("Banana")))
    page.wait_for_selector("#vs-results .vs-card", timeout=60_000)
    page.wait_for_function("document.getElementById('vs-status').innerText !== " + json.dumps(searching), timeout=60_000)
    assert page.locator("#vs-status").inner_text() in statuses
    scores = page.locator("#vs-results .vs-card-score").all_inner_texts()
    assert scores and all(re.fullmatch(match, score) for score in scores), scores
    # Where the box is, read to screen readers: German words, German percentages ("95 %").
    page.locator("#vs [data-vs-box]").focus()
    page.keyboard.press("Shift+ArrowLeft")  # one step narrower
    with translation.override("de"):
        edge = [_("{n}%").format(n=n) for n in (0, 95, 0, 100)]
        where = _("The box covers {x0} to {x1} across and {y0} to {y1} down the photo.").format(
            x0=edge[0], x1=edge[1], y0=edge[2], y1=edge[3])
    assert "95\u00a0%" in where and page.locator("#vs [data-vs-box-where]").inner_text() == where
    context.close()


# -- a multilingual shop: LocaleMiddleware, i18n_patterns, the API outside them ------------------


@pytest.fixture
def multilingual(settings):
    settings.ROOT_URLCONF = "tests.urls_i18n"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE[:1], "django.middleware.locale.LocaleMiddleware", *settings.MIDDLEWARE[1:]]
    settings.LANGUAGES = [("de", "Deutsch"), ("fr", "Français"), ("en", "English")]
    settings.LANGUAGE_CODE = "en"
    return settings


def api_language(client, **headers) -> tuple[str, str]:
    """The language the API answered in: its Content-Language, and DRF's own 405 words."""
    response = client.get("/api/visual-search/search/", HTTP_ACCEPT="application/json", **headers)
    assert response.status_code == 405
    return response["Content-Language"], response.json()["detail"]


@pytest.mark.parametrize("cookie", [None, "de"])
def test_the_api_outside_i18n_patterns_answers_in_the_language_the_widget_asks_for(client, multilingual, cookie):
    """The widget on a French page asks with ``Accept-Language: fr``. Under
    ``i18n_patterns(prefix_default_language=False)`` the unprefixed API was answered in LANGUAGE_CODE
    whatever it asked, and a language cookie (German, from an earlier set_language) won over it: a
    French page listed English or German names and links to those pages."""
    if cookie:
        client.cookies[multilingual.LANGUAGE_COOKIE_NAME] = cookie
    assert 'lang="fr"' in client.get("/fr/search-by-photo/").content.decode()
    with translation.override("fr"):
        french = _('Method "{method}" not allowed.').format(method="GET")
    assert french != 'Method "GET" not allowed.'
    assert api_language(client, HTTP_ACCEPT_LANGUAGE="fr") == ("fr", french)
    # Without the header (another client), or asking for a language the shop does not offer: Django's
    # choice (LANGUAGE_CODE for an unprefixed URL under prefix_default_language=False).
    assert api_language(client)[0] == "en"
    assert api_language(client, HTTP_ACCEPT_LANGUAGE="ja, fr-CA;q=0.5")[0] == "fr"
    assert api_language(client, HTTP_ACCEPT_LANGUAGE="ja")[0] == "en"



def test_a_shop_without_locale_middleware_keeps_its_language(client):
    response = client.get("/api/visual-search/search/", HTTP_ACCEPT="application/json", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.json()["detail"] == 'Method "GET" not allowed.' and "Content-Language" not in response


@pytest.mark.django_db
def test_management_commands_stay_english_in_a_german_shop(settings):
    """Commands run in the shop's language (Django activates LANGUAGE_CODE); only
    visual_search_status asked for English, and `visual_search_versions list` printed "Trainiert"
    and "Aktiv" in its English table in a German shop."""
    from io import StringIO

    from django.core.management import call_command

    from visual_search.models import ModelVersion

    settings.LANGUAGE_CODE = "de"
    ModelVersion.objects.create(label="Adapted", status="trained", progress={"stage": "trained", "done": 1, "total": 1})
    out = StringIO()
    with translation.override("de"):
        german = str(ModelVersion.Status.TRAINED.label)
        assert german != "Trained"
        call_command("visual_search_versions", "list", stdout=out)
        assert translation.get_language() == "de"  # the caller's language is given back
    line = next(line for line in out.getvalue().splitlines() if "Adapted" in line)
    assert "Trained" in line and german not in line


@pytest.mark.parametrize("language", ["de", "fr"])
def test_a_throttled_search_on_the_search_page_is_told_in_the_shop_s_language(client, settings, language):
    """The page showed the API's English "Too many searches from your connection. Try again in 60
    seconds." on a German or French page; the widget's script said it in the page's language."""
    settings.LANGUAGE_CODE = language
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": "1/min"}
    cache.clear()
    assert client.post("/search-by-photo/", {}).status_code == 400  # counted: "Choose a photo first."
    response = client.post("/search-by-photo/", {})
    page = html_lib.unescape(response.content.decode())
    seconds = int(re.search(r"(\d+)", page.split("vs-error", 1)[1]).group(1)) if "vs-error" in page else 0
    with translation.override(language):
        expected = translation.ngettext(
            "Too many searches in a short time. Please try again in %(seconds)d second.",
            "Too many searches in a short time. Please try again in %(seconds)d seconds.", 60) % {"seconds": 60}
    assert response.status_code == 429 and "Too many searches" not in page and "Try again" not in page
    assert expected.replace("60", str(seconds)) in page and 55 <= seconds <= 61, page
    cache.clear()


@pytest.mark.django_db
def test_the_api_s_english_detail_names_the_model_in_english(client, multilingual, monkeypatch):
    """A shop's translated verbose name (``_("product")``) went into the API's English detail in the
    client's language: "No Produkt with id 999999." (here the package's own "indexed image")."""
    from django.utils.translation import gettext_lazy

    from tests.testapp.models import Product

    monkeypatch.setattr(Product._meta, "verbose_name", gettext_lazy("indexed image"))
    response = client.get("/api/visual-search/products/999999/similar/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 404 and response["Content-Language"] == "de"
    assert response.json()["detail"] == "No indexed image with id 999999."
