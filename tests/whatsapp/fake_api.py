"""A fake Graph API (WhatsApp Cloud API) on 127.0.0.1, in a thread: media info and download, media
upload, messages (and "read" with the typing indicator), and scripted failures (Graph errors by code,
429 with Retry-After, a dropped connection). Nothing leaves the machine."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, urlsplit

from tests.local_server import LocalServer, QuietHandler

TOKEN = "EAAG-test-token"
PHONE_NUMBER_ID = "106540352242922"
VERSION = "v23.0"


class FakeGraphAPI(LocalServer):
    """``url`` is the API_URL to configure; ``calls`` lists ``(kind, params, time)`` where kind is
    "media-info", "download", "upload", "read", "messages", "number" or
    "subscribe"; ``files`` maps a media id to its bytes;
    ``fail(kind, *outcomes)`` scripts the next answers: "190", "130429", "131047"... (a Graph error with
    that code), "429:N" (HTTP 429, Retry-After N), "drop"."""

    def __init__(self):
        self.calls: list[tuple[str, dict, float]] = []
        self.files: dict[str, bytes] = {}
        self.file_sizes: dict[str, int] = {}
        self.failures: dict[str, deque] = defaultdict(deque)
        self.delay: dict[str, float] = {}
        self.held: dict[str, threading.Event] = {}  # a call of the kind waits until its event is set
        self._uploads = 0
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def fail(self, kind: str, *outcomes: str) -> None:
        self.failures[kind].extend(outcomes)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.calls]

    def sent(self) -> list[dict]:
        """The messages sent to customers, in order."""
        return [params for kind, params, _ in self.calls if kind == "messages"]

    def texts(self) -> list[str]:
        return [m["text"]["body"] for m in self.sent() if m["type"] == "text"]

    def wait_for(self, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.sent()) >= count:
                return self.sent()
            time.sleep(0.05)
        raise AssertionError(f"no message within {timeout}s; calls: {self.kinds()}")

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                if not self._authorised():
                    return None
                if parts.path.startswith("/media-files/"):
                    media_id = parts.path.rsplit("/", 1)[-1]
                    if self._scripted("download", {"media_id": media_id}):
                        return None
                    data = fake.files.get(media_id)
                    if data is None:
                        return self._error(404, 100, "Unsupported get request")
                    return self._send(200, "application/octet-stream", data)
                prefix = f"/{VERSION}/"
                media_id = parts.path[len(prefix):]
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if media_id == PHONE_NUMBER_ID:
                    if self._scripted("number", query):
                        return None
                    return self._json(200, {"id": PHONE_NUMBER_ID, "display_phone_number": "+1 555-000-1111",
                                            "verified_name": "Test Shop", "quality_rating": "GREEN",
                                            "code_verification_status": "NOT_VERIFIED", "platform_type": "CLOUD_API",
                                            "throughput": {"level": "STANDARD"}})
                if self._scripted("media-info", {"media_id": media_id, **query}):
                    return None
                if media_id not in fake.files:
                    return self._error(400, 100, "Unsupported get request. Object with ID does not exist")
                size = fake.file_sizes.get(media_id, len(fake.files[media_id]))
                return self._json(200, {"url": f"{fake.url}/media-files/{media_id}", "mime_type": "image/jpeg",
                                        "sha256": "x", "file_size": size, "id": media_id, "messaging_product": "whatsapp"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._authorised():
                    return None
                path = urlsplit(self.path).path
                if path == f"/{VERSION}/{PHONE_NUMBER_ID}/media":
                    params = self._multipart(body)
                    if self._scripted("upload", params):
                        return None
                    with fake._lock:
                        fake._uploads += 1
                        media_id = f"up{fake._uploads}"
                    return self._json(200, {"id": media_id})
                if path.endswith("/subscribed_apps"):
                    if self._scripted("subscribe", {"waba_id": path.split("/")[2]}):
                        return None
                    return self._json(200, {"success": True})
                if path != f"/{VERSION}/{PHONE_NUMBER_ID}/messages":
                    return self._error(400, 100, "Unsupported post request")
                params = json.loads(body or b"{}")
                kind = "read" if params.get("status") == "read" else "messages"
                if self._scripted(kind, params):
                    return None
                if kind == "read":
                    return self._json(200, {"success": True})
                return self._json(200, {"messaging_product": "whatsapp", "contacts": [{"input": params.get("to"), "wa_id": params.get("to")}],
                                        "messages": [{"id": f"wamid.out{len(fake.calls)}"}]})

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._error(401, 190, "Error validating access token: Session has expired", subcode=463)
                return False

            def _scripted(self, kind: str, params: dict) -> bool:
                """Record the call; answer a scripted failure, if one is next (True)."""
                with fake._lock:
                    fake.calls.append((kind, params, time.monotonic()))
                time.sleep(fake.delay.get(kind, 0))
                if kind in fake.held:
                    fake.held[kind].wait(60)
                outcome = fake.failures[kind].popleft() if fake.failures[kind] else None
                if outcome is None:
                    return False
                if outcome == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif outcome.startswith("429:"):
                    self._error(429, 130429, "Rate limit hit", headers={"Retry-After": outcome[4:]})
                else:
                    code = int(outcome)
                    status = 401 if code == 190 else 400
                    self._error(status, code, {190: "Error validating access token: Session has expired",
                                               130429: "Rate limit hit",
                                               131047: "Re-engagement message",
                                               131053: "Media upload error"}.get(code, "Invalid parameter"))
                return True

            def _multipart(self, body: bytes) -> dict:
                kind = self.headers.get("Content-Type", "")
                message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + body)
                return {part.get_param("name", header="content-disposition"):
                        part.get_payload(decode=True) if part.get_filename() else part.get_payload(decode=True).decode()
                        for part in message.iter_parts()}

            def _error(self, status: int, code: int, message: str, subcode: int | None = None, headers: dict | None = None):
                error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Atest"}
                if subcode:
                    error["error_subcode"] = subcode
                self._json(status, {"error": error}, headers)

            def _json(self, status: int, payload: dict, headers: dict | None = None):
                self._send(status, "application/json", json.dumps(payload).encode(), headers)

            def _send(self, status: int, content_type: str, data: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
