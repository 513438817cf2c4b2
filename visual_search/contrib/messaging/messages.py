"""What a customer sent, as every messenger's adapter describes it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# What a message is, as far as search by photo cares.
PHOTO = "photo"  # an image to search: a photo, or an image sent as a file
TEXT = "text"
STICKER = "sticker"
FILE = "file"  # a file that is not an image (a PDF, a video...)
OTHER = "other"  # anything else: a voice note, a location, a contact...
KINDS = (PHOTO, TEXT, STICKER, FILE, OTHER)

# How much of a chat id a log line shows (see :func:`masked`).
SHOWN_DIGITS = 4


def masked(chat_id: object) -> str:
    """A chat id as log lines show it: ``"***4567"``, its last :data:`SHOWN_DIGITS` characters.

    A WhatsApp chat id is the customer's phone number, a Telegram one their account's id: personal
    data a log would keep for as long as the shop keeps its logs (and send to an error tracker). The
    last digits still tell the chats of one log apart, and match a customer's complaint ("my number
    ends in 4567") to its lines.
    """
    text = str(chat_id or "")
    return "***" + text[-SHOWN_DIGITS:] if text else "(none)"


@dataclass(frozen=True)
class IncomingMessage:
    """One message from a customer: text, or a photo to fetch with :meth:`Messenger.download`.

    The photo's bytes are not in it: the webhook must answer at once, so the download happens in the
    background, from ``file_id`` (the service's own handle for the file). Every field is JSON-safe, so
    the message travels to a Celery worker as :meth:`as_dict`.
    """

    chat_id: str  # where the answer goes
    kind: str  # one of KINDS
    event_id: str = ""  # the service's id of this delivery: a retried delivery has the same one
    text: str = ""
    file_id: str = ""
    file_size: int | None = None  # as the service announced it, before any download
    mime_type: str = ""
    language: str = ""  # the customer's language code, when the service tells it
    # The message the answer quotes, where a bare answer would not say which message it answers: in a
    # chat of several people (a Telegram group), or a photo among several (WhatsApp). Empty otherwise.
    reply_to: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncomingMessage:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
