"""The Celery app the integration tests start a real worker with (``celery -A tests.celery_app worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("visual_search_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["visual_search"])

# Test hook: slow every task down so the fault-injection tests can kill a worker mid-batch.
_delay = float(os.environ.get("VISUAL_SEARCH_TEST_TASK_DELAY", "0") or 0)
if _delay:
    import time

    from celery.signals import task_prerun

    @task_prerun.connect(weak=False)
    def _slow_down(**kwargs):
        time.sleep(_delay)

# Test hook: slow the embedding itself (after the task has counted its attempt), so the shutdown
# tests can stop a worker while it computes. On worker_init, in the main process: prefork's pool
# processes inherit it, and the other pools (threads, gevent) run their tasks there.
_embed_delay = float(os.environ.get("VISUAL_SEARCH_TEST_EMBED_DELAY", "0") or 0)
if _embed_delay:
    import time

    from celery.signals import worker_init

    @worker_init.connect(weak=False)
    def _slow_embedding(**kwargs):
        from visual_search import tasks

        index_objects = tasks.index_objects

        def slow_index_objects(*args, **kwargs):
            time.sleep(_embed_delay)
            return index_objects(*args, **kwargs)

        tasks.index_objects = slow_index_objects

# Test hook: the workers' liveness notes, in seconds (visual_search.workers.HEARTBEAT), shorter.
_heartbeat = float(os.environ.get("VISUAL_SEARCH_TEST_HEARTBEAT", "0") or 0)
if _heartbeat:
    from celery.signals import worker_init

    @worker_init.connect(weak=False)
    def _short_heartbeat(**kwargs):
        from visual_search import workers

        workers.HEARTBEAT, workers.HEARTBEAT_TIMEOUT = _heartbeat, 3 * _heartbeat

# Test hook: every task holds the process without yielding, as TensorFlow computing does: under
# gevent's patching time.sleep yields to the hub, so the original one.
_blocking_delay = float(os.environ.get("VISUAL_SEARCH_TEST_BLOCKING_DELAY", "0") or 0)
if _blocking_delay:
    import sys
    import time

    from celery.signals import task_prerun

    @task_prerun.connect(weak=False)
    def _hold_the_process(**kwargs):
        monkey = sys.modules.get("gevent.monkey")
        (monkey.get_original("time", "sleep") if monkey else time.sleep)(_blocking_delay)
