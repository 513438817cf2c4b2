"""The search-by-photo endpoint under a real WSGI server (gunicorn) on loopback, for a bounded time."""

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

import visual_search
from tests.conftest import catalogue_image, photos
from tests.integration.conftest import ROOT, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "tests" / "artifacts"
CONCURRENCY, SECONDS, THROTTLE, WORKERS = 8, 15, "30/min", 2


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"limit\"\r\n\r\n5\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, data: bytes) -> tuple[int, float, bytes]:
    body, content_type = multipart(data)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, time.perf_counter() - start, response.read()
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - start, error.read()


@pytest.fixture
def gunicorn(celery_env, make_product):
    with visual_search.pause_indexing():
        for name in ["Lemon", "Lime", "Mango", "Kiwi", "Banana", "Oatly-Oat-Milk"]:
            make_product(name, catalogue_image(name))
    port = free_port()
    env = {**celery_env, "VISUAL_SEARCH_TEST_THROTTLE": THROTTLE}
    env.pop("CELERY_BROKER_URL")
    log = ARTIFACTS / "gunicorn.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--timeout", "120"],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/visual-search/search/"
    wait_for(lambda: _reachable(url), timeout=60, what="gunicorn")
    # Warm every worker (each loads VGG16 once, on its first search) before the clock starts.
    warm = [threading.Thread(target=post, args=(url, catalogue_image("Lime").read_bytes())) for _ in range(WORKERS * 2)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    yield url
    server.terminate()
    server.wait(20)


def _reachable(url: str) -> bool:
    try:
        return post(url, catalogue_image("Lemon").read_bytes())[0] in (200, 429)
    except OSError:
        return False


def test_concurrent_searches_get_no_5xx_and_the_throttle_answers_429(gunicorn):
    queries = [p.read_bytes() for paths in photos("val").values() for p in paths][:20]
    bad = [b"", b"<html>not a photo</html>", catalogue_image("Kiwi").read_bytes()[:500]]
    statuses: list[int] = []
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def client(n: int) -> None:
        k = n
        while time.monotonic() < deadline:
            data = bad[k % len(bad)] if k % 10 == 0 else queries[k % len(queries)]
            code, seconds, _ = post(gunicorn, data)
            with lock:
                statuses.append(code)
                if code == 200:
                    latencies.append(seconds)
            k += CONCURRENCY

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    figures = {
        "concurrency": CONCURRENCY, "seconds": SECONDS, "throttle": THROTTLE, "workers": WORKERS, "requests": len(statuses),
        "statuses": counts, "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None,
    }
    (ARTIFACTS / "load.json").write_text(json.dumps(figures, indent=2))
    print(f"\nload: {json.dumps(figures)}")
    assert not [c for c in statuses if c >= 500], counts
    assert counts.get(200, 0) > 0 and counts.get(429, 0) > 0, counts
    assert set(counts) <= {200, 400, 429}, counts
