"""A real Redis server and real Celery worker processes, started for the integration tests.

``redis-server`` must be installed (``apt-get install redis-server``); CI installs it. Each worker
is a separate ``celery worker`` process using the same database (the SQLite file, or on MySQL and
MariaDB the test database the tests created) and media folder as the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import mysql

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}")


class RedisServer:
    def __init__(self, tmp: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed: apt-get install redis-server"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        self.binary = binary
        self.tmp = tmp
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.ping() or self.process.poll() is not None, timeout=20, what="redis-server")
        assert self.process.poll() is None, f"redis-server could not start on port {self.port} (taken by another process meanwhile?)"

    def ping(self) -> bool:
        """Whether this server answers on its port: this one, by its process id. A test that stops it
        and starts it again (same port: the workers have its URL) found the port's next owner, another
        test run's Redis, answering the ping, and the tests went on against it."""
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).info("server")["process_id"] == self.process.pid
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Worker:
    """One ``celery worker`` process (prefork, its own children, unless ``pool`` says), logging to a file."""

    def __init__(self, env: dict, log: Path, name: str, concurrency: int = 1, pool: str = "prefork", options: tuple = ()):
        self.log = log
        self.broker_url = env["CELERY_BROKER_URL"]
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
                "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO",
                "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--prefetch-multiplier", "1",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        wait_for(lambda: "ready." in self.log.read_text() or self._died(), timeout=timeout, what=f"worker ({self.log})")
        assert self.process.poll() is None, self.log.read_text()[-3000:]

    def _died(self) -> bool:
        return self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: what an OOM killer or a lost machine does."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def integration_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("integration")
    (base / "media").mkdir()
    return base


@pytest.fixture(scope="session")
def redis_server(integration_dirs):
    server = RedisServer(integration_dirs)
    yield server
    server.stop()


@pytest.fixture
def media_root(settings, integration_dirs):
    """Overrides the per-test media folder: the workers must see the files the tests save."""
    settings.MEDIA_ROOT = str(integration_dirs / "media")
    return integration_dirs / "media"


@pytest.fixture
def celery_env(redis_server, integration_dirs, django_db_setup, settings):
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": broker_url(redis_server),
        "CELERY_RESULT_BACKEND": redis_server.url,
        **database_env(connection),
        "VISUAL_SEARCH_TEST_MEDIA": str(integration_dirs / "media"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(ROOT),
    }
    return env


def database_env(connection) -> dict:
    """What points another process (a worker, a server) at the tests' own database: the SQLite file
    (``VISUAL_SEARCH_TEST_DB``), or the test database on the ``VISUAL_SEARCH_TEST_MYSQL`` server."""
    if os.environ.get("VISUAL_SEARCH_TEST_MYSQL"):
        return {"VISUAL_SEARCH_TEST_MYSQL": mysql.on_database(os.environ["VISUAL_SEARCH_TEST_MYSQL"], connection.settings_dict["NAME"])}
    return {"VISUAL_SEARCH_TEST_DB": connection.settings_dict["NAME"]}


@pytest.fixture
def broker(redis_server, settings):
    """Point this test process's Celery app at the real Redis, and route work through it."""
    from tests.celery_app import app

    settings.CELERY_BROKER_URL = broker_url(redis_server)
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    app.conf.broker_url = broker_url(redis_server)
    app.conf.result_backend = redis_server.url
    redis_server_flush(redis_server)
    if os.environ.get("VISUAL_SEARCH_TEST_BROKER"):  # what an earlier test left in that broker's queue
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(app.conf.task_default_queue)
    yield app
    app.conf.broker_url = None
    app.conf.result_backend = None


def broker_url(redis_server: RedisServer) -> str:
    """The workers' broker: the test Redis, or ``VISUAL_SEARCH_TEST_BROKER`` (a RabbitMQ run:
    ``amqp://guest:guest@localhost:5672//``, docs/celery.md); Redis stays the results' and the cache's."""
    return os.environ.get("VISUAL_SEARCH_TEST_BROKER") or redis_server.url


# Tests of Redis as the broker, not run on another: Redis stopped or restarted empty, its lists read
# (what waits, what a worker holds), or a killed worker's messages held for the visibility timeout
# (RabbitMQ gives them back at once: a killed worker's start-up sweep then runs twice, harmlessly).
redis_broker_only = pytest.mark.skipif(bool(os.environ.get("VISUAL_SEARCH_TEST_BROKER")), reason="Redis as the broker")


def redis_server_flush(server: RedisServer) -> None:
    import redis

    redis.Redis(port=server.port).flushall()


@pytest.fixture
def start_worker(celery_env, integration_dirs, request):
    workers: list[Worker] = []

    def start(name: str = "w1", concurrency: int = 1, wait: bool = True, pool: str = "prefork", options: tuple = ()) -> Worker:
        worker = Worker(celery_env, integration_dirs / f"{request.node.name}-{name}.log", name, concurrency, pool, options)
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
