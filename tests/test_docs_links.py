"""The docs name things that exist: what a shop developer copies from README.md and docs/*.md works.

Links and anchors resolve as GitHub renders them; management commands and their options, setting
keys, dotted paths and Python snippets are checked against the code, without running anything.
docs/settings.md itself is checked against the spec by test_settings_spec.py; the sdist's copy of
the README's links by test_packaging.py.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand

from visual_search import queue
from visual_search.conf import CHECK_IDS, SPEC
from visual_search.contrib.messaging.tasks import HANDLE_MESSAGE
from visual_search.contrib.telegram.conf import DEFAULTS as TELEGRAM
from visual_search.contrib.whatsapp.conf import DEFAULTS as WHATSAPP

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "demo_shop" / "README.md", ROOT / "benchmarks" / "README.md"]
PAGE_IDS = [page.relative_to(ROOT).as_posix() for page in PAGES]
SETTINGS = {"VISUAL_SEARCH": SPEC, "VISUAL_SEARCH_TELEGRAM": TELEGRAM, "VISUAL_SEARCH_WHATSAPP": WHATSAPP}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _prose(markdown: str) -> str:
    """The page without its fenced blocks (a `# comment` in a shell block is no heading)."""
    return _FENCE.sub("", markdown)


def _lines(page: Path):
    for number, line in enumerate(page.read_text().splitlines(), 1):
        yield f"{page.relative_to(ROOT)}:{number}", line


# --- links and anchors ------------------------------------------------------------------------

# An inline link or image's target (an optional "title" after it), and an HTML attribute's.
_TARGETS = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|(?:src|href)=[\"']([^\"']+)")


def github_anchor(heading: str) -> str:
    """GitHub's id of a heading: its text (links and markup dropped) lowercased, punctuation but
    '-' and '_' removed, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(page.read_text()), re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")  # a repeated heading: -1, -2...
    return found | set(re.findall(r"<a (?:name|id)=\"([^\"]+)\"", page.read_text()))


def test_the_anchor_rule_is_githubs():
    assert github_anchor("Result cards: thumbnails, price, stock (`RESULT_ADAPTER`)") == "result-cards-thumbnails-price-stock-result_adapter"
    assert github_anchor("What customers may see (`VISIBILITY`)") == "what-customers-may-see-visibility"
    assert github_anchor("FAISS: approximate, in-process") == "faiss-approximate-in-process"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for link, attribute in _TARGETS.findall(_prose(page.read_text())):
        target = link or attribute
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(ROOT)}")
    assert broken == []


# --- management commands ----------------------------------------------------------------------


def _command_apps() -> dict[str, str]:
    """{command: app} for Django's, this project's and the optional apps' (not installed in the
    tests' settings: telegram, whatsapp, the demo shop's)."""
    commands = dict(get_commands())
    for folder in [*ROOT.glob("visual_search/contrib/*/management/commands"), *ROOT.glob("demo_shop/*/management/commands")]:
        app = ".".join(folder.parent.parent.relative_to(ROOT).parts)
        commands.update({module.stem: app for module in folder.glob("*.py") if not module.stem.startswith("_")})
    return commands


def _options(command: str, app: str) -> set[str]:
    """Every option string of the command and of its subcommands, and the subcommands' names."""
    if app.startswith("demo_shop"):  # its module imports the demo's models: read, not loaded
        source = ROOT.joinpath(*app.split("."), "management", "commands", f"{command}.py").read_text()
        common = {option for action in BaseCommand().create_parser("manage.py", command)._actions for option in action.option_strings}
        return common | set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source))
    parsers, found = [load_command_class(app, command).create_parser("manage.py", command)], set()
    while parsers:
        for action in parsers.pop()._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                found.update(action.choices)
                parsers.extend(action.choices.values())
    return found


# `manage.py check`, `visual_search_reindex --only stale`: a command, then what follows it up to the
# end of the code span, of the table cell, or of the line (a trailing `# --async, --force` included).
_COMMAND = re.compile(r"(?:manage\.py\s+([a-z_]+)|\b(visual_search_[a-z_]+))([^`|\n]*)")


def test_every_command_and_option_the_docs_name_exists():
    commands, wrong = _command_apps(), []
    for page in PAGES:
        for where, line in _lines(page):
            for after_manage_py, bare, rest in _COMMAND.findall(line):
                name = after_manage_py or bare
                if name not in commands:
                    # visual_search_widget, visual_search_pages...: other things are named so too,
                    # but not with options after them.
                    if after_manage_py or re.match(r"\s+--", rest):
                        wrong.append(f"{where}: no command {name}")
                    continue
                rest = re.split(r"\bvisual_search_[a-z_]+|manage\.py", rest)[0]
                named = re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
                if named:  # loaded only then: the demo shop's command needs the demo's settings
                    known = _options(name, commands[name])
                    wrong += [f"{where}: {name} has no option {option}" for option in named if option not in known]
    assert wrong == []


# --- settings ---------------------------------------------------------------------------------

_KEY = re.compile(r"\b(VISUAL_SEARCH(?:_TELEGRAM|_WHATSAPP)?)\[\s*[\"'](\w+)[\"']\s*\]")


def _python_blocks(page: Path):
    text = page.read_text()
    for match in _FENCE.finditer(text):
        if match.group(1) in ("python", "py"):
            yield f"{page.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 2}", match.group(2)


def test_every_setting_key_the_docs_name_exists():
    unknown = []
    for page in PAGES:
        for where, line in _lines(page):
            unknown += [f"{where}: {name}[{key!r}]" for name, key in _KEY.findall(line) if key not in SETTINGS[name]]
        for where, code in _python_blocks(page):
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                    names = [target.id for target in node.targets if isinstance(target, ast.Name) and target.id in SETTINGS]
                    keys = [key.value for key in node.value.keys if isinstance(key, ast.Constant)]
                    unknown += [f"{where}: {name}[{key!r}]" for name in names for key in keys if key not in SETTINGS[name]]
    assert unknown == []


@pytest.mark.parametrize(("page", "defaults"), [("telegram.md", TELEGRAM), ("whatsapp.md", WHATSAPP)])
def test_a_messengers_settings_table_lists_every_key_with_its_default(page, defaults):
    rows = re.findall(r"^\| `([A-Z_]+)` \| `([^`]+)`", (ROOT / "docs" / page).read_text(), re.M)
    assert {key: ast.literal_eval(default) for key, default in rows} == defaults


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_every_python_snippet_compiles(page):
    # `{..., "KEY": value}` is no Python: a developer who pastes it gets a SyntaxError.
    for where, code in _python_blocks(page):
        compile(code, where, "exec")


# --- dotted paths -----------------------------------------------------------------------------

_DOTTED = re.compile(r"(?<![\w/.-])(visual_search(?:\.[A-Za-z_]\w*)+)")
_TASKS = {queue.EMBED_OBJECTS, queue.SWEEP, queue.ACTIVATE_VERSION, queue.TRAIN_MODEL, queue.FIT_WHITENING, HANDLE_MESSAGE}


def _top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names.update(target.id for target in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _exists(path: str) -> bool:
    """Whether ``path`` is a module of the package, or a name defined at the top of one (read, not
    imported: the Oscar modules need Oscar's settings), or an attribute of such a class."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        module = next((file for file in (base.with_suffix(".py"), base / "__init__.py") if file.is_file()), None)
        if module is None:
            continue
        rest = parts[end:]
        if not rest:
            return True
        source = module.read_text()
        if rest[0] == "__all__" or rest[0] not in _top_level_names(source):
            # visual_search's __init__ names its public API in a lazy table: "Name": "module"
            return bool(re.search(rf"[\"']{re.escape(rest[0])}[\"']\s*:", source))
        return len(rest) == 1 or rest[1] in source
    return False


def _is_model_label(path: str) -> bool:
    """``visual_search.ImageEmbedding``: a model by its label, as ``dumpdata`` takes it."""
    app_label, _, name = path.partition(".")
    try:
        return name[:1].isupper() and apps.get_model(app_label, name) is not None
    except LookupError:
        return False


def _is_permission(path: str) -> bool:
    match = re.fullmatch(r"visual_search\.(?:add|change|delete|view)_(\w+)", path)
    return bool(match) and any(model._meta.model_name == match.group(1) for model in apps.get_app_config("visual_search").get_models())


# The changelog names what was moved or removed, as it was then.
@pytest.mark.parametrize("page", [page for page in PAGES if page.name != "upgrading.md"], ids=[i for i in PAGE_IDS if not i.endswith("upgrading.md")])
def test_every_dotted_path_the_docs_name_exists(page):
    missing = []
    for where, line in _lines(page):
        for path in _DOTTED.findall(line):
            if path in _TASKS or re.search(r"\.[EWI](\d{3}|0xx)?$", path) or path in CHECK_IDS or _is_permission(path) or _is_model_label(path):
                continue
            if not _exists(path):
                missing.append(f"{where}: {path}")
    assert missing == []
