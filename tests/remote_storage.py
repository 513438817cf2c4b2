"""A media storage that behaves as a shop's S3, GCS or Azure bucket does (django-storages), offline.

Built on Django's ``InMemoryStorage``: no ``path()`` (no local file to hand out), ``url()`` signed
with an expiry in the query string (django-storages' default ``querystring_auth=True``, one hour),
a name saved again overwriting the file (S3's default ``AWS_S3_FILE_OVERWRITE = True``), errors
that pass (``fail_next``), every read counted, and a missing file reported, as some storages do,
with an error of the storage's own rather than ``FileNotFoundError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from urllib.parse import parse_qs, urlsplit

from django.core.files import File
from django.core.files.storage import InMemoryStorage

BUCKET = "https://shop-media.bucket.example/"
EXPIRES_IN = 3600  # django-storages' AWS_QUERYSTRING_EXPIRE default


class ClientError(Exception):
    """What boto3 raises (botocore.exceptions.ClientError): no OSError, whatever went wrong."""

    def __init__(self, code: int, message: str):
        super().__init__(f"An error occurred ({code}) when calling the GetObject operation: {message}")
        self.code = code


class CountingFile(File):
    """A file read from the bucket: what its reads returned is added to ``storage.bytes_read``."""

    def __init__(self, file, name, storage):
        super().__init__(file, name)
        self.storage = storage

    def read(self, *args):
        data = super().read(*args)
        self.storage.bytes_read += len(data)
        return data


class RemoteStorage(InMemoryStorage):
    """An object store: see the module's docstring. ``now`` is the clock the signatures use; another
    ``base_url`` is another bucket (S3Storage(bucket_name=...)), with files of its own."""

    def __init__(self, *, overwrite: bool = True, missing_as_client_error: bool = False, base_url: str = BUCKET, **kwargs):
        super().__init__(base_url=base_url, **kwargs)
        self.overwrite = overwrite
        self.missing_as_client_error = missing_as_client_error
        self.fail_next: dict[str, list[BaseException]] = {}  # method -> errors raised by its next calls
        self.reads: list[str] = []  # names opened, in order
        self.bytes_read = 0  # what callers read of them
        self.calls: list[str] = []  # every remote call: "open name", "exists name", "mtime name", "save name"
        self.now = time.time

    def _fail(self, method: str, name: str) -> None:
        self.calls.append(f"{method} {name}")
        errors = self.fail_next.get(method)
        if errors:
            raise errors.pop(0)

    def path(self, name):
        raise NotImplementedError("This backend doesn't support absolute paths.")

    def _relative_path(self, name):
        # InMemoryStorage finds its files through path(); a bucket's callers get none.
        return os.path.relpath(InMemoryStorage.path(self, name), self.location)

    def _open(self, name, mode="rb"):
        self._fail("open", name)
        self.reads.append(name)
        if self.missing_as_client_error and not super().exists(name):
            raise ClientError(404, "Not Found")
        with super()._open(name, mode) as handle:
            return CountingFile(io.BytesIO(handle.read()), name, self)

    def exists(self, name):
        self._fail("exists", name)
        return super().exists(name)

    def get_modified_time(self, name):
        self._fail("mtime", name)
        return super().get_modified_time(name)

    def get_available_name(self, name, max_length=None):
        return name if self.overwrite else super().get_available_name(name, max_length)

    def _save(self, name, content):
        self.calls.append(f"save {name}")
        if self.overwrite and super().exists(name):
            super().delete(name)
        return super()._save(name, content)

    def url(self, name):
        expires = int(self.now()) + EXPIRES_IN
        signature = hashlib.sha256(f"{name}|{expires}".encode()).hexdigest()[:16]
        return f"{super().url(name)}?X-Expires={expires}&X-Signature={signature}"


def expiry(url: str) -> int:
    """When a signed URL stops working (seconds since the epoch)."""
    return int(parse_qs(urlsplit(url).query)["X-Expires"][0])
