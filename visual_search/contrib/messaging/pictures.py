"""A result's picture, for services that fetch pictures themselves: can the service reach its host,
and its bytes from the shop's storage when it cannot (or when uploading is surer)."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote, urlsplit

from django.core.files.storage import default_storage

logger = logging.getLogger("visual_search")

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def is_private_host(host: str) -> bool:
    """A host no server on the internet can reach: localhost, a name without a dot ("web", a container's),
    a local suffix, a private or loopback address."""
    host = host.lower()
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host.strip("[]").replace(":", "."):
        return True
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def stored_name(url: str) -> str | None:
    """The name in the default storage of the file ``url`` serves (its path under the storage's own
    URL, ``MEDIA_URL``...), or None when the URL is not the storage's. A signed URL's query string
    (a private bucket's, new on every page) is no part of it: one file, one name."""
    base = urlsplit(default_storage.url("")).path
    path = unquote(urlsplit(url).path)
    if not base.endswith("/") or not path.startswith(base):
        return None
    return path[len(base):]


def stored_bytes(url: str, limit: int) -> bytes | None:
    """The file ``url`` serves from the default storage (``MEDIA_URL``...), as bytes; None when the URL
    is not the storage's (a CDN's, a shop's own thumbnailer's elsewhere), the file cannot be read, or
    it is over ``limit`` bytes."""
    try:
        name = stored_name(url)
        if name is None:
            return None
        with default_storage.open(name, "rb") as handle:
            data = handle.read(limit + 1)
    except Exception as exc:  # noqa: BLE001 - any storage's error: the result still goes out, as text
        logger.warning("Cannot read the picture %s from the storage (%s: %s)", url, type(exc).__name__, exc)
        return None
    return data if 0 < len(data) <= limit else None
