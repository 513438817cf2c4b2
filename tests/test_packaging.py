"""What `pip install django-visual-search` installs: the wheel built from this checkout carries
every file the app needs at run time, not only the Python modules. A template missing from the
wheel passes every other test (they run from the checkout) and fails in a shop. The sdist is what
pip builds where no wheel fits: the same files, and no half of this test suite."""

import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import django
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
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    # benchmarks/ is a package too (python -m benchmarks), with measured results: never in the wheel.
    # deploy/: the process files docs/deployment.md links to, which a shop copies.
    for name in ("visual_search", "tests", "docs", "benchmarks", "deploy"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "artifacts", "cache"))
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


def test_the_wheel_carries_the_app_only(wheel):
    # No tests, benchmarks (their results), documentation or demo shop in a shop's site-packages.
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert tops == {"visual_search", f"django_visual_search-{_version()}.dist-info"}
    assert f"django_visual_search-{_version()}.dist-info/licenses/LICENSE" in wheel.namelist()


def _version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_the_wheel_carries_the_contrib_apps_templates_and_migrations(wheel):
    shipped = set(wheel.namelist())
    assert "visual_search/contrib/oscar/templates/visual_search/oscar/search.html" in shipped
    assert "visual_search/templates/visual_search/widget.html" in shipped
    assert "visual_search/static/visual_search/widget.js" in shipped
    assert any(name.startswith("visual_search/migrations/0001") for name in shipped)
    assert {"visual_search/locale/de/LC_MESSAGES/django.mo", "visual_search/locale/fr/LC_MESSAGES/django.mo"} <= shipped


def test_the_wheel_marks_the_app_as_typed(wheel):
    """PEP 561: without py.typed, mypy in a shop says "module is installed, but missing library stubs
    or py.typed marker" of every import from visual_search, and checks none of its calls."""
    assert "visual_search/py.typed" in wheel.namelist()


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
    assert {name for name in shipped if name.startswith("benchmarks")} == set()


def test_the_sdist_carries_what_a_distro_packager_reads(sdist):
    # The changelog, and the documentation README.md links to with its pictures: the sdist carried
    # README.md alone, its links to docs/ pages missing beside it.
    shipped = _sdist_names(sdist)
    pages = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*") if path.is_file()}
    assert {"docs/upgrading.md", "docs/index.md", "docs/images/search-by-photo.png"} <= pages
    assert pages - shipped == set()


def test_a_wheel_built_from_the_sdist_equals_the_checkouts(sdist, wheel, tmp_path):
    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (root,) = unpacked.iterdir()
    assert set(_build_wheel(root, tmp_path / "wheel").namelist()) == set(wheel.namelist())


def _metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    return message_from_bytes(wheel.read(name))


# An inline Markdown link or image's target, and an HTML attribute's.
_TARGETS = re.compile(r"\]\(([^)\s]+)\)|(?:src|href)=[\"']([^\"']+)")


def _targets(markdown: str) -> list[str]:
    return [link or attribute for link, attribute in _TARGETS.findall(markdown)]


def test_the_readmes_relative_links_point_at_files_of_the_checkout():
    # What GitHub shows: the same targets, relative, each a file or folder of the repository.
    relative = [target.split("#")[0] for target in _targets((ROOT / "README.md").read_text()) if not re.match(r"[a-z]+:|#", target)]
    assert relative and [target for target in relative if not (ROOT / target).exists()] == []


# Linked from the shipped docs, but the repository's alone: the example project and the measurements
# (their own pages link further into a checkout); docs/index.md presents them as such.
_REPOSITORY_ONLY = ("demo_shop/", "benchmarks/")


def test_the_shipped_docs_link_only_to_files_the_sdist_carries(sdist):
    # docs/deployment.md sends a shop to deploy/gunicorn.conf.py (the warm-up), deploy/Procfile and
    # deploy/docker-compose.yml; the sdist carried the page and none of the three.
    shipped = _sdist_names(sdist)
    broken = []
    for page in sorted(name for name in shipped if name.startswith("docs/") and name.endswith(".md")):
        for target in _targets((ROOT / page).read_text()):
            path = target.split("#")[0]
            if not path or re.match(r"[a-z]+:", path) or "{" in path:   # a URL, an anchor, a template's {{ url }}
                continue
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
            if resolved.startswith(_REPOSITORY_ONLY):
                continue
            if resolved not in shipped:
                broken.append(f"{page}: {target}")
    assert broken == []


def test_the_pypi_page_states_the_django_and_python_versions_the_readme_promises(wheel):
    # PyPI's sidebar and its search filters read the classifiers: they listed Django 4.2 and 5.2
    # only, while the README promises 4.2 LTS to 6.1 (tested on 6.1 too), and no keywords.
    metadata = _metadata(wheel)
    readme = (ROOT / "README.md").read_text()
    classifiers = set(metadata.get_all("Classifier"))
    lowest, highest = re.search(r"Django (\d+\.\d+) LTS to (\d+\.\d+)", readme).groups()
    tested_here = "%d.%d" % django.VERSION[:2]
    assert {f"Framework :: Django :: {version}" for version in (lowest, highest, tested_here)} <= classifiers
    python = re.search(r"Python (\d+\.\d+) or newer", readme).group(1)
    assert metadata["Requires-Python"] == f">={python}"
    assert {f"Programming Language :: Python :: {python}", "Programming Language :: Python :: 3 :: Only"} <= classifiers
    assert {"django", "search by photo", "django-oscar"} <= set(metadata["Keywords"].split(","))
    assert metadata["License-Expression"] == "MIT"


def test_every_extra_is_documented_where_a_shop_reads_about_installing(wheel):
    extras = _metadata(wheel).get_all("Provides-Extra")
    assert "telegram" in extras
    for page in ("README.md", "docs/installation.md"):
        text = (ROOT / page).read_text()
        assert [extra for extra in extras if f"[{extra}]" not in text] == [], page
