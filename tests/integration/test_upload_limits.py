"""The upload path's limits under a real WSGI server (gunicorn), with raw sockets: bodies without a
length, false lengths, many parts, huge field names, a slow client and concurrent large uploads.

Nothing here may make the server read past ``MAX_UPLOAD_BYTES``, answer 5xx, or stop answering others.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import catalogue_image
from tests.integration.conftest import ROOT, database_env, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PATH = "/api/visual-search/search/"
BOUNDARY = "vsboundary"
TIMEOUT = 30  # gunicorn's worker timeout: how long a silent client may hold a worker
LIMIT = 10 * 1024 * 1024  # MAX_UPLOAD_BYTES (the default)


@pytest.fixture
def server(integration_dirs, django_db_setup, tmp_path):
    from django.db import connection

    port = free_port()
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
        **database_env(connection), "VISUAL_SEARCH_TEST_MEDIA": str(integration_dirs / "media"),
        "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path),  # where Django spools uploads over 2.5 MB
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--timeout", str(TIMEOUT)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _status(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is not None, timeout=60, what="gunicorn")
    # Each worker loads VGG16 on its first search: warm both, so no request below waits for that.
    photo = _part("image", catalogue_image("Lime").read_bytes(), "lime.jpg") + f"--{BOUNDARY}--\r\n".encode()
    warm = [threading.Thread(target=_status, args=(port, _headers(length=len(photo)) + photo)) for _ in range(4)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join(300)
    yield port, process, tmp_path
    process.terminate()
    process.wait(20)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=180)  # a busy CI machine loads VGG16 slowly
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # what the server has not read stays here
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    """Send what the server reads; it may answer and close before the end (then the rest is unread)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _status(port: int, request: bytes) -> int | None:
    try:
        with _connect(port) as sock:
            sock.sendall(request)
            return int(sock.recv(64).split(b" ")[1])
    except (OSError, IndexError, ValueError):  # refused, or closed without an answer
        return None


def _answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n0\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    # gunicorn sends Django's responses chunked: "<size>\r\n<json>\r\n0\r\n\r\n"
    payload = body.split(b"\r\n")[1] if b"\r\n" in body else body
    return status, json.loads(payload)


def _headers(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", "Host: x", f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    lines += [f"Content-Length: {length}"] if length is not None else []
    lines += ["Transfer-Encoding: chunked"] if chunked else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def _worker_rss_kib(process: subprocess.Popen) -> int:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    total = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_a_chunked_body_is_refused_without_being_read(server):
    port, _, _ = server
    sock = _connect(port)
    sock.sendall(_headers(chunked=True))
    sent, total, chunk = 0, 4 * LIMIT, b"\xff" * (1024 * 1024)
    try:
        while sent < total:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
    except OSError:
        pass  # the server answered and closed: it never read the rest
    status, body = _answer(sock)
    sock.close()
    assert status == 411 and body["code"] == "length_required" and "Content-Length" in body["detail"]
    assert sent < total


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server):
    port, _, _ = server
    with _connect(port) as sock:
        sock.sendall(_headers(length=5 * LIMIT))  # and not one byte of the body
        status, body = _answer(sock)
    assert status == 413 and body["code"] == "file_too_large"


def test_many_parts_and_huge_field_names_get_a_400_with_a_code(server):
    port, _, _ = server
    many = b"".join(_part(f"f{n}", b"x") for n in range(5000)) + f"--{BOUNDARY}--\r\n".encode()
    huge = _part("n" * 2_000_000, b"x") + f"--{BOUNDARY}--\r\n".encode()
    for body, code in ((many, "too_many_fields"), (huge, "parse_error")):
        with _connect(port) as sock:
            _send(sock, _headers(length=len(body)) + body)
            status, answer = _answer(sock)
        assert status == 400 and answer["code"] == code


def test_a_slow_client_holds_one_worker_for_at_most_the_timeout_and_others_are_served(server):
    port, _, _ = server
    slow = _connect(port)
    slow.sendall(_headers(length=LIMIT // 2) + _part("image", b"\xff\xd8", "a.jpg")[:40])  # then silence
    started = time.monotonic()
    # The other worker answers meanwhile.
    assert _status(port, _headers(length=5 * LIMIT)) == 413
    slow.settimeout(TIMEOUT + 20)
    try:
        closed = slow.recv(1024) == b""
    except ConnectionResetError:
        closed = True
    waited = time.monotonic() - started
    slow.close()
    assert closed or waited < TIMEOUT + 20
    assert waited < TIMEOUT + 15, f"the slow client held a worker for {waited:.0f} s"


def test_concurrent_large_uploads_keep_memory_bounded(server):
    port, process, spool = server  # spool: where Django writes uploads over 2.5 MB
    junk = os.urandom(LIMIT - 100 * 1024)  # just under the limit, not an image
    body = _part("image", junk, "big.jpg") + f"--{BOUNDARY}--\r\n".encode()
    answers: list = []
    for _ in range(4):  # each worker has seen a large upload: what is measured next is growth, not first use
        with _connect(port) as sock:
            _send(sock, _headers(length=len(body)) + body)
            _answer(sock)
    before = _worker_rss_kib(process)

    def upload():
        try:
            with _connect(port) as sock:
                _send(sock, _headers(length=len(body)) + body)
                answers.append(_answer(sock)[0])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers.append(repr(exc))

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    grown_mib = (_worker_rss_kib(process) - before) / 1024
    print(f"6 concurrent {len(body) / 2**20:.1f} MiB uploads: workers' memory grew {grown_mib:.0f} MiB")
    assert sorted(answers) == [400] * 6  # not an image: a clear 400, never a 5xx
    assert grown_mib < 2 * 2 * LIMIT / 2**20  # at most a couple of bodies' worth per worker, not six
    # Django deletes its spooled uploads (tmpXXXX.upload.jpg) when a request ends; one a worker was
    # killed in the middle of (gunicorn's timeout on a loaded machine) stays for the OS to clean.
    print(f"spooled uploads left: {len(list(spool.rglob('*.upload*')))}")
