"""One request through Django's ASGI handler, in the test's process: what uvicorn or daphne hands it.

Unlike the test clients, it goes through ``ASGIHandler`` itself: the path prefix from the scope's
``root_path`` (uvicorn's ``--root-path``, a proxy's) or ``FORCE_SCRIPT_NAME`` as ``reverse()`` sees it,
the body read from ``receive()`` before the view runs, and the response sent as ASGI messages (a
streaming response's iterator consumed as the server consumes it).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import get_script_prefix, set_script_prefix


@dataclass
class ASGIResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    warnings: list[str] = field(default_factory=list)

    def json(self):
        return json.loads(self.body)


def asgi_request(path: str, method: str = "GET", *, root_path: str = "", body: bytes = b"", headers: dict[str, str] | None = None,
                 query: str = "") -> ASGIResponse:
    """``method path`` through ``get_asgi_application()``; ``path`` below ``root_path``, which the
    scope's path includes (as uvicorn 0.26+ sends it)."""
    sent: list[dict] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path,
        "query_string": query.encode(), "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode()),
                    *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items())],
    }

    received: list[bool] = []
    done = asyncio.Event()

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # Django listens for the client leaving while the view runs
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    # As the test client does: the test's database connection (its transaction) is not closed.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    prefix = get_script_prefix()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async_to_sync(get_asgi_application())(scope, receive, send)
    finally:
        set_script_prefix(prefix)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return ASGIResponse(
        status=start["status"],
        headers={k.decode().lower(): v.decode() for k, v in start["headers"]},
        body=b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
        warnings=[str(w.message) for w in caught],
    )
