"""The contract a messaging service's adapter fulfils: parse, download, reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from visual_search.conf import settings as visual_search_settings

from .conf import COMMON, MessengerSettings
from .messages import IncomingMessage


class FileTooLarge(Exception):
    """The service says the file is larger than the bot may fetch (found out only at download time)."""


class Messenger:
    """One messaging service, as the shared flow (:mod:`.handling`) uses it. Subclass per service.

    An adapter sets :attr:`name` (cache keys, logs), :attr:`settings_name` and :attr:`defaults` (its
    settings dict) and :attr:`max_download_bytes` (the service's own limit), and implements
    :meth:`download`, :meth:`reply_text` and :meth:`reply_with_results`. Its webhook view parses the
    payload into :class:`IncomingMessage` objects and gives them to :func:`.inbox.receive`.

    An instance is made with no arguments, in the web process and again in the worker (by its dotted
    path), so it must read everything it needs from settings.
    """

    name: ClassVar[str] = ""
    settings_name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = COMMON
    max_download_bytes: ClassVar[int | None] = None

    @property
    def settings(self) -> MessengerSettings:
        return MessengerSettings(self.settings_name, self.defaults)

    @classmethod
    def path(cls) -> str:
        """The dotted path a worker makes it again from."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def max_photo_bytes(self) -> int:
        """The largest photo worth fetching: the service's limit, and the app's ``MAX_UPLOAD_BYTES``."""
        app_limit = int(visual_search_settings.MAX_UPLOAD_BYTES)
        return min(app_limit, self.max_download_bytes) if self.max_download_bytes else app_limit

    def download(self, message: IncomingMessage) -> bytes:
        """The photo's bytes. Raises :class:`FileTooLarge` when the service refuses a file that big."""
        raise NotImplementedError

    def reply_text(self, message: IncomingMessage, text: str) -> None:
        """Send ``text`` to the chat the message came from."""
        raise NotImplementedError

    def reply_with_results(self, message: IncomingMessage, results: Sequence[dict[str, Any]]) -> None:
        """Send the results, best first: :func:`visual_search.results.describe`'d dicts (``name``,
        absolute ``url`` and ``image_url``, ``score`` and the result adapter's extras such as ``price``
        and ``currency``); :func:`.replies.caption` words one. Never called with an empty list."""
        raise NotImplementedError
