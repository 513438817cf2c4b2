"""The docs tell the whole truth about what a shop developer runs: every option of a command is in
docs/staff.md, every method of a backend's contract is in docs/backends.md's table once, and the
JSON examples of docs/customers.md have the keys the API answers with.

test_docs_links.py checks the other direction (what the docs name exists); these check that
nothing a shop can use, or gets back, is left out or told twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


from visual_search.api.serializers import SearchResultSerializer
from visual_search.backends.base import BaseBackend

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _section(page: str, heading: str) -> str:
    """The text of ``page`` under ``heading`` (a line starting with it), up to the next heading of
    the same or a higher level."""
    text = (DOCS / page).read_text()
    start = re.search(rf"^(#+) {re.escape(heading)}.*$", text, re.M)
    assert start, f"no heading {heading!r} in {page}"
    level = len(start.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start.end())
    return text[start.end(): end.start() if end else len(text)]


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
