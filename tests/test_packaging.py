"""What `pip install django-visual-search` installs: the wheel built from this checkout carries
every file the app needs at run time, not only the Python modules. A template missing from the
wheel passes every other test (they run from the checkout) and fails in a shop. The sdist is what
pip builds where no wheel fits: the same files, and no half of this test suite."""

import shutil
import subprocess
import sys
import tarfile
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
def source(tmp_path_factory) -> Path:
    """A copy of the checkout's files that a build may pick up (the tests too: setuptools puts
    tests/test*.py into an sdist unless MANIFEST.in says otherwise)."""
    if not _setuptools_is_recent():
        pytest.skip("setuptools >= 77 is needed to build the wheel offline (requirements.txt installs it)")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    for name in ("visual_search", "tests"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "artifacts"))
    return source


def _build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("django_visual_search-*.whl")
    return zipfile.ZipFile(built)


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> zipfile.ZipFile:
    return _build_wheel(source, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def sdist(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"],
        cwd=source, check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("django_visual_search-*.tar.gz")
    return built


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


def _sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_the_sdist_carries_the_app_and_no_half_of_the_test_suite(sdist):
    # setuptools' default adds tests/test_*.py without conftest.py, settings.py or the demo shop
    # they need: a suite that cannot run, shipped to every user who builds from the sdist.
    shipped = _sdist_names(sdist)
    assert {name for name in shipped if name.startswith("tests")} == set()
    assert {"pyproject.toml", "README.md", "LICENSE"} <= shipped
    assert "visual_search/locale/de/LC_MESSAGES/django.po" in shipped   # the translations' sources


def test_a_wheel_built_from_the_sdist_equals_the_checkouts(sdist, wheel, tmp_path):
    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (root,) = unpacked.iterdir()
    assert set(_build_wheel(root, tmp_path / "wheel").namelist()) == set(wheel.namelist())
