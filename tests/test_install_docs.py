"""The set-up the docs tell a shop to copy works when copied: a project laid out from the code
blocks of docs/celery.md, and of README.md's "Celery and Redis", in a process that, like
`celery -A yourproject worker`, starts with no DJANGO_SETTINGS_MODULE."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import django
import pytest
from django.test import override_settings

from visual_search.checks import check_project

ROOT = Path(__file__).resolve().parent.parent


def _blocks(doc: str) -> dict[str, str]:
    """The python blocks of ``doc`` by the file their first line names (``# settings.py``);
    a block naming several files (``# yourproject/__init__.py: ...`` lines) is split there."""
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S):
        name = None
        for line in block.splitlines():
            named = re.match(r"# ((?:yourproject/)?[\w/]+\.py)\b", line)
            if named:
                name = named.group(1)
                files.setdefault(name, "")
            elif name:
                files[name] += line + "\n"
    return files


# README.md's block was the celery.md one before 224e6ef, still without the imports and the
# DJANGO_SETTINGS_MODULE line: copied word for word, `celery -A yourproject worker` stopped at start.
@pytest.mark.parametrize("doc", ["docs/celery.md", "README.md"])
def test_the_celery_set_up_of_the_docs_starts_a_worker_with_the_shops_settings(tmp_path, doc):
    files = _blocks(doc)
    assert {"settings.py", "yourproject/celery.py", "yourproject/__init__.py"} <= set(files)
    project = tmp_path / "yourproject"
    project.mkdir()
    (project / "settings.py").write_text("from tests.settings import *  # noqa\n" + files["settings.py"])
    (project / "celery.py").write_text(files["yourproject/celery.py"])
    (project / "__init__.py").write_text(files["yourproject/__init__.py"])
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    run = subprocess.run(
        [sys.executable, "-c", "from yourproject import celery_app; print(celery_app.conf.broker_url)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "redis://localhost:6379/0"


def test_the_celery_settings_of_the_docs_pass_the_checks_on_a_startproject_shop(settings):
    # celery.md's settings block, copied into a `startproject` shop (SQLite, no CACHES), got two
    # warnings at the first `manage.py check` (visual_search.W012, W013), their fixes 100 lines below.
    if django.VERSION < (5, 1):
        pytest.skip("transaction_mode (W013's advice) is Django 5.1's")
    namespace = {  # startproject's database, and Django's default cache where settings.py names none
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    }
    exec(_blocks("docs/celery.md")["settings.py"], namespace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "Overriding setting DATABASES": only the check reads it here
        with override_settings(
            DATABASES=namespace["DATABASES"], CACHES=namespace["CACHES"], CELERY_BROKER_URL=namespace["CELERY_BROKER_URL"],
            VISUAL_SEARCH={**settings.VISUAL_SEARCH, "ASYNC": True},
        ):
            ids = {message.id for message in check_project()}
    assert ids & {"visual_search.W012", "visual_search.W013"} == set()
    # ...and a shop on PostgreSQL that copies the block keeps its connection options.
    postgres = {"DATABASES": {"default": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"sslmode": "require"}}}}
    exec(_blocks("docs/celery.md")["settings.py"], postgres)
    assert postgres["DATABASES"]["default"]["OPTIONS"] == {"sslmode": "require"}
