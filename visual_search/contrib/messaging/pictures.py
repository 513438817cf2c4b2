"""A result's picture, for services that fetch pictures themselves: can the service reach its host,
and its bytes from the shop's storage when it cannot (or when uploading is surer)."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote, urlsplit

from django.core.exceptions import FieldDoesNotExist
from django.core.files.storage import Storage, default_storage

from visual_search.registry import get_registrations

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


def stored_file(url: str) -> tuple[Storage, str] | None:
    """The storage and name of the file ``url`` serves, or None when no storage of the shop's serves
    it. The storages are the registered image fields' (a field may have its own, ``storage=storages[
    "products"]``: its thumbnails are written beside its files) and the default one; a storage whose
    URLs name a host (a bucket's) serves only URLs of that host, and the longest matching base wins. A
    signed URL's query string (a private bucket's, new on every page) is no part of the name."""
    target = urlsplit(url)
    path = unquote(target.path)
    found: list[tuple[bool, int, Storage, str]] = []
    for storage in _storages():
        try:
            base = urlsplit(storage.url(""))
        except Exception:  # noqa: BLE001 - a storage that serves no URLs serves none of these
            continue
        prefix = unquote(base.path)
        if base.netloc and base.netloc.lower() != target.netloc.lower():
            continue
        if prefix.endswith("/") and path.startswith(prefix):
            found.append((bool(base.netloc), len(prefix), storage, path[len(prefix):]))
    if not found:
        return None
    *_, storage, name = max(found, key=lambda match: match[:2])
    return storage, name


def _storages() -> list[Storage]:
    """The registered image fields' storages, then the default storage; each once."""
    found: list[Storage] = []
    for registration in get_registrations():
        try:
            storage = registration.model._meta.get_field(registration.image_field).storage
        except FieldDoesNotExist:  # the registration's own check reports it
            continue
        if all(storage is not other for other in found):
            found.append(storage)
    return found + [default_storage] if all(default_storage is not other for other in found) else found


def stored_name(url: str) -> str | None:
    """The name of the file ``url`` serves in the storage it comes from (see :func:`stored_file`),
    or None when the URL is no storage's."""
    found = stored_file(url)
    return found[1] if found else None


def stored_bytes(url: str, limit: int) -> bytes | None:
    """The file ``url`` serves from the shop's storages (an image field's own, the default one: see
    :func:`stored_file`), as bytes; None when the URL is no storage's (a CDN's, a shop's own
    thumbnailer's elsewhere), the file cannot be read, or it is over ``limit`` bytes."""
    try:
        found = stored_file(url)
        if found is None:
            return None
        storage, name = found
        with storage.open(name, "rb") as handle:
            data = handle.read(limit + 1)
    except Exception as exc:  # noqa: BLE001 - any storage's error: the result still goes out, as text
        logger.warning("Cannot read the picture %s from the storage (%s: %s)", url, type(exc).__name__, exc)
        return None
    return data if 0 < len(data) <= limit else None
