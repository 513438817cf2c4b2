"""Telegram's updates (the webhook's JSON) as the messages the shared flow understands.

Plain dicts are read here, not python-telegram-bot objects: the webhook stays cheap and answers
even for updates of a newer Bot API than the installed library knows.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from visual_search.contrib.messaging.messages import FILE, OTHER, PHOTO, STICKER, TEXT, IncomingMessage

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif")
GROUP_CHATS = ("group", "supergroup")  # where several people talk: answers are replies to their photo


def incoming_message(update: Any, max_bytes: int) -> IncomingMessage | None:
    """The customer's message in ``update``, or None for any other update (edits, channel posts...)."""
    message = update.get("message") if isinstance(update, dict) else None
    chat = message.get("chat") if isinstance(message, dict) else None
    if not isinstance(chat, dict) or "id" not in chat:
        return None
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    common = {"chat_id": str(chat["id"]), "event_id": str(update.get("update_id", "")),
              "language": str(sender.get("language_code") or "")}
    if chat.get("type") in GROUP_CHATS and message.get("message_id") is not None:
        common["reply_to"] = str(message["message_id"])
    return IncomingMessage(**common, **_content(message, max_bytes))


def _content(message: dict, max_bytes: int) -> dict[str, Any]:
    if isinstance(message.get("photo"), list) and message["photo"]:
        size = pick_photo_size(message["photo"], max_bytes)
        return {"kind": PHOTO, "file_id": str(size.get("file_id", "")), "file_size": size.get("file_size"),
                "mime_type": "image/jpeg"}
    if isinstance(message.get("document"), dict):
        document = message["document"]
        kind = PHOTO if is_image(document) else FILE
        return {"kind": kind, "file_id": str(document.get("file_id", "")), "file_size": document.get("file_size"),
                "mime_type": document_type(document)}
    if isinstance(message.get("sticker"), dict):
        return {"kind": STICKER}
    if isinstance(message.get("text"), str):
        return {"kind": TEXT, "text": message["text"]}
    return {"kind": OTHER}


def pick_photo_size(sizes: list, max_bytes: int) -> dict:
    """The largest of Telegram's renditions of a photo (up to 1280 px) that is not over ``max_bytes``;
    when none fits, the smallest (whose size then gets the customer a "too large" answer)."""
    sizes = [s for s in sizes if isinstance(s, dict)]
    by_area = sorted(sizes, key=lambda s: (s.get("width") or 0) * (s.get("height") or 0))
    fitting = [s for s in by_area if (s.get("file_size") or 0) <= max_bytes]
    return (fitting or by_area or [{}])[-1 if fitting else 0]


def is_image(document: dict) -> bool:
    """An image sent "as a file": by its MIME type, else by its name."""
    mime = document_type(document)
    if mime:
        return mime.startswith("image/")
    return str(document.get("file_name") or "").lower().endswith(IMAGE_EXTENSIONS)


def document_type(document: dict) -> str:
    """The document's MIME type as Telegram gives it, else as its name says ("plan.svg": an SVG), so
    that a format the search refuses is refused before any download."""
    mime = str(document.get("mime_type") or "").lower()
    return mime or (mimetypes.guess_type(str(document.get("file_name") or ""))[0] or "")
