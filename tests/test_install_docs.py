"""The set-up the docs tell a shop to copy works when copied: a project laid out from the code
blocks of docs/celery.md, and of README.md's "Celery and Redis", in a process that, like
`celery -A yourproject worker`, starts with no DJANGO_SETTINGS_MODULE."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
