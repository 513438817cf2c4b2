"""A fake Telegram Bot API on 127.0.0.1, in a thread: the methods the bot uses, the file download
path, and scripted failures (429 with retry_after, 400, a dropped connection). Nothing leaves the machine."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl, unquote

from tests.local_server import LocalServer, QuietHandler

TOKEN = "123456:TEST-token_abc"


class FakeBotAPI(LocalServer):
    """``url`` is the API_URL to configure; ``calls`` lists ``(method, params, time)``; ``files`` maps a
    file_id to its bytes; ``fail(method, *outcomes)`` scripts the next answers ("429:N", "400", "400:its
    description", "drop")."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.calls: list[tuple[str, dict, float]] = []
        self.files: dict[str, bytes] = {}
        self.file_sizes: dict[str, int] = {}
        self.failures: dict[str, deque] = defaultdict(deque)
        self.delay: dict[str, float] = {}
        self.held: dict[str, threading.Event] = {}  # a call to the method waits until its event is set
        self.webhook: dict = {}
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def fail(self, method: str, *outcomes: str) -> None:
        self.failures[method].extend(outcomes)

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.calls]

    def sent(self, method: str | None = None) -> list[dict]:
        """The params of every reply call (sendMessage, sendPhoto, sendMediaGroup), in order."""
        wanted = (method,) if method else ("sendMessage", "sendPhoto", "sendMediaGroup")
        return [params for name, params, _ in self.calls if name in wanted]

    def wait_for(self, method: str, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.sent(method)) >= count:
                return self.sent(method)
            time.sleep(0.05)
        raise AssertionError(f"no {method} within {timeout}s; calls: {self.methods()}")

    def _record(self, method: str, params: dict) -> None:
        with self._lock:
            self.calls.append((method, params, time.monotonic()))

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):
                prefix = f"/file/bot{fake.token}/"
                self.path = unquote(self.path)  # python-telegram-bot quotes the token's ':'
                if not self.path.startswith(prefix):
                    return self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                file_id = self.path[len(prefix):].rsplit("/", 1)[-1].rsplit(".", 1)[0]
                fake._record("download", {"path": self.path[len(prefix):]})
                data = fake.files.get(file_id)
                if data is None:
                    return self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                prefix = f"/bot{fake.token}/"
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.startswith(prefix):
                    return self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                method = self.path[len(prefix):]
                params = self._params(body)
                fake._record(method, params)
                time.sleep(fake.delay.get(method, 0))
                if method in fake.held:
                    fake.held[method].wait(60)
                outcome = fake.failures[method].popleft() if fake.failures[method] else None
                if outcome == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if outcome and outcome.startswith("429"):
                    seconds = int(outcome.split(":")[1])
                    return self._reply(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": seconds},
                                             "description": f"Too Many Requests: retry after {seconds}"})
                if outcome and outcome.startswith("400"):
                    description = outcome[4:] or "Bad Request: chat not found"
                    return self._reply(400, {"ok": False, "error_code": 400, "description": description})
                return self._reply(200, {"ok": True, "result": self._result(method, params)})

            def _params(self, body: bytes) -> dict:
                kind = self.headers.get("Content-Type", "")
                if kind.startswith("application/json"):
                    return json.loads(body or b"{}")
                if kind.startswith("multipart/form-data"):
                    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
                    # Files as bytes; fields as UTF-8 text (python-telegram-bot names no charset).
                    return {part.get_param("name", header="content-disposition"):
                            part.get_payload(decode=True) if part.get_filename() else part.get_payload(decode=True).decode()
                            for part in message.iter_parts()}
                return dict(parse_qsl(body.decode()))

            def _result(self, method: str, params: dict):
                now = int(time.time())
                chat = {"id": int(params.get("chat_id", 0) or 0), "type": "private"}
                if method == "getFile":
                    file_id = params["file_id"]
                    size = fake.file_sizes.get(file_id, len(fake.files.get(file_id, b"")))
                    return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": size,
                            "file_path": f"photos/{file_id}.jpg"}
                if method == "sendMessage":
                    return {"message_id": len(fake.calls), "date": now, "chat": chat, "text": params.get("text", "")}
                if method == "sendPhoto":
                    photo = [{"file_id": "sent", "file_unique_id": "sent", "width": 320, "height": 240}]
                    return {"message_id": len(fake.calls), "date": now, "chat": chat, "photo": photo,
                            "caption": params.get("caption", "")}
                if method == "sendMediaGroup":
                    photo = [{"file_id": "sent", "file_unique_id": "sent", "width": 320, "height": 240}]
                    return [{"message_id": len(fake.calls) * 100 + i, "date": now, "chat": chat, "photo": photo,
                             "media_group_id": str(len(fake.calls)), "caption": item.get("caption", "")}
                            for i, item in enumerate(json.loads(params["media"]))]
                if method == "setWebhook":
                    fake.webhook = {"url": params["url"], "allowed_updates": json.loads(params.get("allowed_updates", "[]"))}
                    return True
                if method == "deleteWebhook":
                    fake.webhook = {}
                    return True
                if method == "getWebhookInfo":
                    return {"url": fake.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 2,
                            "allowed_updates": fake.webhook.get("allowed_updates", []),
                            "last_error_date": now, "last_error_message": "Connection refused"}
                return True

            def _reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
