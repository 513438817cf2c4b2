"""A fake service's HTTP server on 127.0.0.1, in a thread: the Telegram Bot API's and the Graph API's
fakes answer through it. Nothing leaves the machine."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A fake's request handler: keep-alive as a real API's, and no access log on the test output."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class LocalServer:
    """Serves ``handler`` on a free port of 127.0.0.1 while used as a context manager; ``url`` is
    its address. A dropped connection is on purpose (the fakes script them), not an error to print."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
