"""The Graph API calls the bot makes, with the standard library (no extra package): JSON calls, a
multipart upload, a media download; Meta's errors as :class:`GraphAPIError`, explained for the logs,
and one retry after a short rate limit.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from django.core.exceptions import ImproperlyConfigured

from .conf import SETTING, graph_url, settings

logger = logging.getLogger("visual_search")

T = TypeVar("T")

USER_AGENT = "django-visual-search (WhatsApp Cloud API)"
# Meta's codes for "too many calls": the business number's throughput (130429), one customer's pair
# rate (131056), the app's or account's call rate (4, 80007, 613), and plain HTTP 429.
RATE_LIMIT_CODES = {4, 613, 80007, 130429, 131056}
TOKEN_CODES = {190}  # the access token expired, was revoked, or is not one
PERMISSION_CODES = {3, 10, *range(200, 300)}
OUTSIDE_WINDOW = 131047  # more than 24 hours since the customer last wrote: templates only
NOT_ALLOWED_RECIPIENT = 131030  # development mode: the number is not in the app's test recipients
DEFAULT_RETRY_AFTER = 1.0  # Meta rarely says how long: wait a second before the one retry


class GraphAPIError(Exception):
    """A Graph API error: the HTTP ``status``, Meta's ``code`` and ``subcode``, its message, and the
    seconds it asked to wait (``Retry-After``), when it did."""

    def __init__(self, status: int, code: int | None, message: str, subcode: int | None = None,
                 retry_after: float | None = None, details: str = ""):
        self.status, self.code, self.subcode, self.retry_after, self.details = status, code, subcode, retry_after, details
        super().__init__(f"HTTP {status}, error {code}{f'/{subcode}' if subcode else ''}: {message}"
                         + (f" ({details})" if details else ""))

    @property
    def is_rate_limit(self) -> bool:
        return self.status == 429 or self.code in RATE_LIMIT_CODES

    def advice(self) -> str:
        """What the shop should do about it, for the log."""
        if self.status == 401 or self.code in TOKEN_CODES:
            return (f"the access token was refused (expired or revoked; the dashboard's temporary token lasts 24 hours): "
                    f"create a System User's permanent token with whatsapp_business_messaging in Meta Business Settings "
                    f"and set {SETTING}['ACCESS_TOKEN']")
        if self.code in PERMISSION_CODES:
            return (f"the token may not use this number: give its System User the WhatsApp account (assets) and the "
                    f"whatsapp_business_messaging permission, and check {SETTING}['PHONE_NUMBER_ID']")
        if self.is_rate_limit:
            return "Meta's rate limit: the answer was dropped; many customers at once, or one customer flooding"
        if self.code == OUTSIDE_WINDOW:
            return ("more than 24 hours passed since the customer's last message, and WhatsApp then allows only "
                    "template messages: the answer came too late (a stopped or backlogged Celery worker?)")
        if self.code == NOT_ALLOWED_RECIPIENT:
            return ("the app is in development mode and this number is not one of its test recipients: add it in "
                    "WhatsApp > API Setup, or publish the app")
        if self.code == 131026:
            return "WhatsApp could not deliver to this customer (an old app, terms not accepted, or the business is blocked)"
        if self.code == 100:
            return f"Meta refused a parameter: check {SETTING}['PHONE_NUMBER_ID'] and API_VERSION"
        return "see Meta's error codes for the WhatsApp Cloud API"


def token() -> str:
    value = settings.ACCESS_TOKEN
    if not value:
        raise ImproperlyConfigured(f"{SETTING}['ACCESS_TOKEN'] is not set: add a token for the WhatsApp Cloud API.")
    return str(value)


def call(method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
    """A JSON call to ``{API_URL}/{API_VERSION}/{path}``; its JSON answer, or :class:`GraphAPIError`."""
    body = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return json.loads(_open(method, graph_url(path), body, headers, float(settings.TIMEOUT)) or b"{}")


def upload(path: str, fields: dict[str, str], filename: str, content_type: str, data: bytes) -> dict[str, Any]:
    """A multipart/form-data POST (Graph's media upload): ``fields`` and one file."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return json.loads(_open("POST", graph_url(path), body, headers, 2 * float(settings.TIMEOUT)) or b"{}")


def download(url: str, limit: int) -> bytes | None:
    """The bytes at a media URL Graph gave (the token is needed there too); None when over ``limit``."""
    return _open("GET", url, None, {}, 2 * float(settings.TIMEOUT), limit=limit)


def _open(method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float,
          limit: int | None = None) -> bytes | None:
    request = Request(url, data=body, method=method,
                      headers={"Authorization": f"Bearer {token()}", "User-Agent": USER_AGENT, **headers})
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured API_URL, https in production
            if limit is None:
                return response.read()
            data = response.read(limit + 1)
            return None if len(data) > limit else data
    except HTTPError as exc:
        raise error_from(exc) from None
    except (URLError, OSError) as exc:
        raise ConnectionError(f"Graph API {method} {url.split('?')[0]}: {getattr(exc, 'reason', exc)}") from exc


def error_from(exc: HTTPError) -> GraphAPIError:
    try:
        payload = json.loads(exc.read() or b"{}")
    except ValueError:
        payload = {}
    error = payload.get("error") if isinstance(payload, dict) and isinstance(payload.get("error"), dict) else {}
    retry_after = None
    try:
        retry_after = float(exc.headers.get("Retry-After")) if exc.headers and exc.headers.get("Retry-After") else None
    except ValueError:
        pass
    details = error.get("error_data", {}).get("details", "") if isinstance(error.get("error_data"), dict) else ""
    return GraphAPIError(exc.code, error.get("code"), str(error.get("message") or exc.reason), error.get("error_subcode"),
                         retry_after, str(details))


def with_retry(send: Callable[[], T]) -> T:
    """``send()``; after a rate limit whose wait (``Retry-After``, else a second) is at most
    ``RETRY_AFTER_MAX``, wait and send once more. A longer one re-raises at once: a worker should not
    sleep for minutes."""
    try:
        return send()
    except GraphAPIError as exc:
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
        if not exc.is_rate_limit or wait > float(settings.RETRY_AFTER_MAX):
            raise
        logger.info("WhatsApp: rate limited (%s); retrying once in %ss", exc, wait)
        time.sleep(wait)
        return send()
