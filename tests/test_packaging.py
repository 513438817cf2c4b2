"""What `pip install django-visual-search` installs: the wheel built from this checkout carries
every file the app needs at run time, not only the Python modules. A template missing from the
wheel passes every other test (they run from the checkout) and fails in a shop."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_is_recent() -> bool:
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if not _setuptools_is_recent():
        pytest.skip("setuptools >= 77 is needed to build the wheel offline (requirements.txt installs it)")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "visual_search", source / "visual_search", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("django_visual_search-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_every_file_of_the_app(wheel):
    shipped = set(wheel.namelist())
    wanted = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "visual_search").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert wanted - shipped == set()


def test_the_wheel_carries_the_contrib_apps_templates_and_migrations(wheel):
    shipped = set(wheel.namelist())
    assert "visual_search/contrib/oscar/templates/visual_search/oscar/search.html" in shipped
    assert "visual_search/templates/visual_search/widget.html" in shipped
    assert "visual_search/static/visual_search/widget.js" in shipped
    assert any(name.startswith("visual_search/migrations/0001") for name in shipped)
