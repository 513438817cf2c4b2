"""For Celery's ``autodiscover_tasks()``: the task that answers messages is the shared one."""

from visual_search.contrib.messaging.tasks import handle_message  # noqa: F401
