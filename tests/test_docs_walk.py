"""The docs tell the whole truth about what a shop developer runs: every option of a command is in
docs/staff.md, every method of a backend's contract is in docs/backends.md's table once, and the
JSON examples of docs/customers.md have the keys the API answers with.

test_docs_links.py checks the other direction (what the docs name exists); these check that
nothing a shop can use, or gets back, is left out or told twice.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tomllib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import load_command_class

from visual_search.api.serializers import SearchResultSerializer
from visual_search.backends.base import BaseBackend

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Django's own options of every command: not the package's to document.
DJANGO_OPTIONS = {"-h", "--help", "--version", "-v", "--verbosity", "--settings", "--pythonpath", "--traceback",
                  "--no-color", "--force-color", "--skip-checks"}


def _section(page: str, heading: str) -> str:
    """The text of ``page`` under ``heading`` (a line starting with it), up to the next heading of
    the same or a higher level."""
    text = (DOCS / page).read_text()
    # Headings are looked for outside code blocks, whose shell comments start with "# " too.
    prose = re.sub(r"```.*?```", lambda block: re.sub(r"[^\n]", " ", block.group()), text, flags=re.S)
    start = re.search(rf"^(#+) {re.escape(heading)}.*$", prose, re.M)
    assert start, f"no heading {heading!r} in {page}"
    level = len(start.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(prose, start.end())
    return text[start.end(): end.start() if end else len(text)]


def _options(command: str) -> dict[str, set[str]]:
    """{subcommand or "": its options} of one of the package's commands, Django's own left out."""
    found, parsers = {}, [("", load_command_class("visual_search", command).create_parser("manage.py", command))]
    while parsers:
        name, parser = parsers.pop()
        options = set()
        for action in parser._actions:
            options.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.items())
        found[name] = options - DJANGO_OPTIONS
    return found


@pytest.mark.parametrize(
    "command",
    ["visual_search_status", "visual_search_reindex", "visual_search_rebuild_index", "visual_search_train",
     "visual_search_versions", "visual_search_duplicates"],
)
def test_staff_md_shows_every_option_of_every_command(command):
    # `visual_search_versions activate --force` was in no command list of staff.md or versions.md:
    # a shop learnt of it only from the refusal's own message.
    section = _section("staff.md", f"`{command}`")
    missing = []
    for subcommand, options in _options(command).items():
        for option in sorted(options):
            shown = re.search(rf"{re.escape(subcommand)}\b[^\n|]*?{re.escape(option)}\b", section) if subcommand else (
                re.search(rf"(?<![\w-]){re.escape(option)}\b", section))
            if not shown:
                missing.append(f"{subcommand} {option}".strip())
    assert missing == []


# The bots' commands are documented on their own pages, whole; the package's in staff.md.
BOT_COMMANDS = {"visual_search_telegram": ("visual_search.contrib.telegram", "telegram.md"),
                "visual_search_whatsapp": ("visual_search.contrib.whatsapp", "whatsapp.md")}


def _subcommands(command: str, app: str) -> dict[str, set[str]]:
    """{subcommand: its options} of a command with subcommands (Django's own options left out)."""
    found = {}
    for action in load_command_class(app, command).create_parser("manage.py", command)._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, parser in action.choices.items():
                found[name] = {o for a in parser._actions for o in a.option_strings} - DJANGO_OPTIONS
    return found


def test_every_command_of_the_package_has_its_page_and_index_md_says_which():
    # index.md said staff.md had every management command; the bots' two were in telegram.md and
    # whatsapp.md only, and staff.md did not point there.
    commands = {path.stem for path in (ROOT / "visual_search").rglob("management/commands/visual_search_*.py")}
    staff = {heading for heading in re.findall(r"^### `(visual_search_\w+)`", (DOCS / "staff.md").read_text(), re.M)}
    assert commands == staff | set(BOT_COMMANDS)
    row = next(line for line in (DOCS / "index.md").read_text().splitlines() if "(staff.md)" in line)
    management = _section("staff.md", "Management commands").split("###", 1)[0]
    for command, (_app, page) in BOT_COMMANDS.items():
        assert command in row and command in management and f"({page}" in management


@pytest.mark.parametrize("command", sorted(BOT_COMMANDS))
def test_a_bots_page_shows_every_subcommand_and_option_of_its_command(command):
    # `set-webhook --drop-pending-updates` was shown nowhere: telegram.md named it for delete-webhook.
    app, page = BOT_COMMANDS[command]
    text = (DOCS / page).read_text()
    missing = []
    for subcommand, options in _subcommands(command, app).items():
        if not re.search(rf"{command} {re.escape(subcommand)}\b", text):
            missing.append(subcommand)
        missing += [f"{subcommand} {option}" for option in sorted(options)
                    if not re.search(rf"(?<![\w-]){re.escape(subcommand)}\b[^\n|]*?{re.escape(option)}\b", text)]
    assert missing == []


def test_versions_md_shows_how_to_activate_a_version_that_is_not_better():
    assert re.search(r"visual_search_versions activate \d+ --force", (DOCS / "versions.md").read_text())


def test_the_backend_contract_table_names_each_method_once_and_each_exists():
    # `repair(...)` had two rows, saying the same thing in other words.
    table = _section("backends.md", "Writing a backend").split("| method | what it does |", 1)[1].split("\n\n", 1)[0]
    methods = re.findall(r"^\| `(\w+)\(", table, re.M)
    assert len(methods) == len(set(methods)), [m for m in methods if methods.count(m) > 1]
    assert [m for m in methods if not callable(getattr(BaseBackend, m, None))] == []


def _json_examples(page: str) -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", (DOCS / page).read_text(), re.S)]


def test_the_search_answer_example_has_the_keys_of_the_api():
    (example,) = _json_examples("customers.md")
    assert set(example) == {"results", "confident"}
    assert set(example["results"][0]) == set(SearchResultSerializer().fields)
    assert isinstance(example["confident"], bool) and 0 <= example["results"][0]["score"] <= 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("web_settings")
def test_the_api_answers_with_the_shape_the_readme_and_customers_md_show(client, make_product):
    # README's one line on the API showed {"results": [...]} alone: an app reading it never looked
    # for `confident`, whether to say "no confident match".
    from tests.conftest import catalogue_image

    for name in ("Pink-Lady", "Banana"):
        make_product(name, catalogue_image(name))
    photo = SimpleUploadedFile("photo.jpg", catalogue_image("Banana").read_bytes(), content_type="image/jpeg")
    answer = client.post("/api/visual-search/search/", {"image": photo}).json()
    (example,) = _json_examples("customers.md")
    assert set(example) == set(answer) and set(example["results"][0]) == set(answer["results"][0])
    readme = re.search(r"answers `(\{\"results\".*?)`", (ROOT / "README.md").read_text(), re.S).group(1)
    outer, inner = readme.split("[", 1)[0] + readme.rsplit("]", 1)[1], readme.split("[", 1)[1].rsplit("]", 1)[0]
    assert set(re.findall(r'"(\w+)"', outer)) == set(answer)
    assert set(re.findall(r'"(\w+)"', inner)) == set(answer["results"][0])


def _leading_value(cell: str):
    """The value a table cell starts with (`"distil"`, `[4]`, 2e-4, 0 (...)), or None for words."""
    cell = cell.strip()
    token = re.match(r"`([^`]+)`|([-+\d.e]+)(?:\s|$)", cell)
    if not token:
        return None
    try:
        return ast.literal_eval(token.group(1) or token.group(2))
    except (ValueError, SyntaxError):
        return None


def test_adapting_md_options_table_gives_the_defaults_training_uses(settings):
    from visual_search.training.trainer import TrainingOptions

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "TRAINING": {}}
    table = _section("adapting.md", "Options")
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", table, re.M)
    assert len(rows) >= 12
    checked = 0
    for name, *cells in rows:
        for objective, cell in zip(("distil", "classify"), cells):
            documented = _leading_value(cell)
            if documented is None:
                continue
            actual = getattr(TrainingOptions(objective=objective), name)
            actual = list(actual) if isinstance(actual, tuple) else actual
            assert documented == actual, (name, objective, cell)
            checked += 1
    assert checked >= 18


def _options_table(heading: str) -> dict[str, str]:
    table = _section("backends.md", heading).split("| `OPTIONS` key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for keys, default in re.findall(r"^\| ((?:`\w+`(?: / )?)+) \| ([^|]+) \|", table, re.M):
        names, values = re.findall(r"`(\w+)`", keys), default.split(" / ")
        rows.update(zip(names, values) if len(values) == len(names) else ((name, default) for name in names))
    return rows


def test_backends_md_options_tables_give_the_backends_defaults(settings):
    import inspect

    pytest.importorskip("faiss")
    from visual_search.backends.faiss import FaissBackend
    from visual_search.backends.pgvector.backend import PgvectorBackend

    faiss = _options_table("FAISS")
    assert set(faiss) == set(FaissBackend.option_names)
    backend = FaissBackend("ann")
    assert backend.path.parts[-2:] == ("visual_search_index", "ann")
    assert {name: _leading_value(faiss[name]) for name in ("NPROBE", "GATHER_MAX", "FILTER_DEPTH")} == {
        "NPROBE": backend.nprobe, "GATHER_MAX": backend.gather_max, "FILTER_DEPTH": backend.filter_depth}

    pgvector = _options_table("PostgreSQL")
    assert set(pgvector) == set(PgvectorBackend.option_names)
    signature = inspect.signature(PgvectorBackend.__init__).parameters
    documented = {name: _leading_value(value) for name, value in pgvector.items() if _leading_value(value) is not None}
    assert documented == {name: signature[name].default for name in documented}
    assert len(documented) == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("web_settings")
def test_customers_md_names_every_api_detail_that_follows_the_language(client, make_product, settings):
    # It named the damaged photo's reason only; "The file is not an image we can read..." came back
    # in German too, to an app that showed `detail` as English for a log.
    from tests.conftest import catalogue_image

    make_product("Banana", catalogue_image("Banana"))
    jpeg = catalogue_image("Banana").read_bytes()
    bad = {"not an image": b"<html>not an image</html>", "damaged": jpeg[:3000]}

    def details(language):
        settings.LANGUAGE_CODE = language
        answers = {name: client.post("/api/visual-search/search/", {"image": SimpleUploadedFile("p.jpg", data)}).json()
                   for name, data in bad.items()}
        answers["limit"] = client.post("/api/visual-search/search/", {"image": SimpleUploadedFile("p.jpg", jpeg), "limit": 0}).json()
        answers["required"] = client.post("/api/visual-search/search/", {}).json()
        return {name: answer["detail"] for name, answer in answers.items()}

    english, german = details("en"), details("de")
    translated = {name for name in english if english[name] != german[name]}
    assert translated >= {"not an image", "damaged"}
    bullet = (DOCS / "customers.md").read_text().split("- **Language.**", 1)[1].split("\n- **", 1)[0]
    bullet = " ".join(bullet.split())
    assert [name for name in translated if " ".join(english[name].split()[:6]) not in bullet] == []  # its first words


def _diagram_line(diagram: list[str], module: str) -> int:
    name = module.removeprefix("visual_search.").replace(".", "/")
    lines = [i for i, line in enumerate(diagram) if re.search(rf"(?<![\w/]){re.escape(name)}(?![\w])", line)]
    assert lines, f"{name} is not in architecture.md's diagram"
    return lines[0]


def test_architecture_md_draws_the_layers_of_pyproject_toml_in_their_order():
    # previews, thumbnails, http and logs had layers in the contract, and no place in the drawing.
    diagram = re.search(r"```\n(.*?)```", (DOCS / "architecture.md").read_text(), re.S).group(1).splitlines()
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    rows = [[_diagram_line(diagram, module.strip()) for module in layer.split("|")] for layer in layers[1:]]
    for upper, lower in zip(rows, rows[1:]):
        assert max(upper) <= min(lower), (upper, lower)


def test_architecture_md_names_every_module_of_the_package():
    # Ten modules (previews, thumbnails, http, logs, embeddings/runtime and /structure, api/docs...)
    # were on no line of the module map.
    text = (DOCS / "architecture.md").read_text()
    package, missing = ROOT / "visual_search", []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[0] in ("contrib", "migrations") or parts[:2] == ("management", "commands") or parts[-1] == "__init__":
            continue
        if len(parts) == 1:
            named = re.search(rf"`{parts[0]}/?`", text)
        else:  # a module of a subpackage: its name on a line that names the subpackage
            named = any(f"`{parts[0]}/" in line and re.search(rf"\b{parts[1]}\b", line) for line in text.splitlines())
        if not named:
            missing.append("/".join(parts))
    assert missing == []


def test_demo_readme_names_every_filter_and_action_the_admin_mixin_adds():
    # It named the "visual search" filter and two actions; the mixin also adds the "possible
    # duplicate image" filter and the action that dismisses its warnings.
    from visual_search.admin_mixins import VisualSearchAdminMixin

    class Admin(VisualSearchAdminMixin, type("Base", (), {"get_list_filter": lambda self, request: []})):
        pass

    readme = " ".join((ROOT / "demo_shop" / "README.md").read_text().split())
    actions = [str(getattr(Admin, name).short_description) for name in Admin.visual_search_actions]
    filters = [str(list_filter.title) for list_filter in Admin().get_list_filter(None)]
    assert len(actions) == 3 and len(filters) == 2
    assert [title for title in actions + filters if f'"{title}"' not in readme] == []


def test_security_md_sends_a_reporter_to_a_contact_that_exists():
    # It said "report to the maintainers (see the package's metadata)", and the metadata names none.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    contact = [person for key in ("authors", "maintainers") for person in project.get(key, []) if person.get("email")]
    reporting = _section("security.md", "Reporting")
    if not contact and not project.get("urls"):
        assert "see the package's metadata" not in reporting and "names no" in reporting
    else:
        assert any(person["email"] in reporting for person in contact) or any(url in reporting for url in project.get("urls", {}).values())


def test_deployment_md_lets_the_workers_write_the_thumbnails_they_make():
    # The process table asked of workers a "media storage readable", and a bullet said web
    # processes made the thumbnails on first display; on a bucket the indexing task makes them.
    from visual_search import indexing, thumbnails

    assert "thumbnails.Writer" in Path(indexing.__file__).read_text()  # the task writes them
    text = (DOCS / "deployment.md").read_text()
    worker = next(line for line in text.splitlines() if line.startswith("| worker"))
    assert f"writable under `{thumbnails.FOLDER}/`" in worker
    assert "made on first display\n  (`MEDIA_ROOT" not in text


def test_whatsapp_md_lists_the_graph_api_codes_the_client_treats_as_each_kind():
    # The permission codes left out 3, the rate limits 613: a shop reading its log for 613 did not
    # learn it was a rate limit, waited for once.
    from visual_search.contrib.whatsapp import client

    errors = _section("whatsapp.md", "Errors from the Graph API")

    def codes(kind: str) -> set[int]:
        (listed,) = re.findall(rf"^- \*\*([\d, -]+)\*\* \({kind}\)", errors, re.M)
        found = set()
        for part in listed.split(","):
            low, _, high = part.strip().partition("-")
            found.update(range(int(low), int(high or low) + 1))
        return found

    assert codes("permissions") == set(client.PERMISSION_CODES)
    assert codes("rate limits") == set(client.RATE_LIMIT_CODES) | {429}


def test_demo_readme_names_every_package_template_the_demo_overrides():
    # It named base.html and result_card.html, not search.html, which the demo overrides too.
    readme = (ROOT / "demo_shop" / "README.md").read_text()
    overrides = ROOT / "demo_shop" / "catalogue" / "templates"
    names = sorted(path.relative_to(overrides).as_posix() for path in (overrides / "visual_search").rglob("*.html"))
    assert names and [name for name in names if f"`{name}`" not in readme] == []
    assert all((ROOT / "visual_search" / "templates" / name).is_file() for name in names)  # overrides, not new ones


def test_demo_readme_pages_table_lists_every_path_the_demo_mounts():
    # The API's docs page and the bots' webhooks were served by the demo and missing from its table.
    urls = (ROOT / "demo_shop" / "urls.py").read_text()
    table = _section_of(ROOT / "demo_shop" / "README.md", "Pages")
    mounted = [prefix for prefix in re.findall(r'path\("([^"]*)"', urls) if prefix]
    missing = [prefix for prefix in mounted if f"/{prefix}" not in table]
    assert "/api/visual-search/docs/" in table and missing == []


def _section_of(page: Path, heading: str) -> str:
    text = page.read_text()
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
