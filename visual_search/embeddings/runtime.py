"""TensorFlow and Keras, imported on first use and without their start-up chatter on stderr.

Every lazy TensorFlow/Keras import of the package goes through :func:`tensorflow` or :func:`keras`.
``TF_CPP_MIN_LOG_LEVEL`` (default "3" here: fatal errors only) silences TensorFlow's own logging, but
only once its logging is set up: the lines it writes while its libraries load ("oneDNN custom
operations are on", "Could not find cuda drivers") come before that, so the first import captures
stderr and passes on only what that level lets through. They say nothing a shop can act on.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from types import ModuleType

# absl/TensorFlow log lines: a severity letter, then MMDD, then the time ("I0000 00:00:17...").
LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
ABSL_PREFACE = "All log messages before absl::InitializeLog() is called are written to STDERR"

_lock = threading.Lock()


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module; the first call imports it quietly."""
    if "tensorflow" not in sys.modules:
        with _lock:
            _import_quietly()
    import tensorflow

    return tensorflow


def keras() -> ModuleType:
    """The ``keras`` module, on a quietly imported TensorFlow."""
    tensorflow()
    import keras

    return keras


def _import_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to capture (a daemon): nothing to keep quiet either
        import tensorflow  # loaded for the caller, which imports it again

        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            passed = kept_lines(captured.read().decode(errors="replace"), _min_level())
            if passed:
                sys.stderr.write(passed)


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    except ValueError:
        return 0


def kept_lines(text: str, min_level: int) -> str:
    """What ``TF_CPP_MIN_LOG_LEVEL=min_level`` lets through of ``text``: anything that is not a log
    line below that level (a traceback, another thread's output) is kept, continuation lines
    follow their log line."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = LOG_LINE.match(line)
        if match:
            dropping = SEVERITY[match.group(1)] < min_level
        elif ABSL_PREFACE in line:
            dropping = SEVERITY["W"] < min_level
        if not dropping:
            kept.append(line)
    return "".join(kept)
