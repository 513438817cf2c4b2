"""Meta's webhook deliveries (JSON) as the messages the shared flow understands.

One delivery can carry several messages (and several changes); each customer message becomes one
:class:`IncomingMessage`. ``statuses`` (sent, delivered, read, failed: the fate of the bot's own
messages) are not messages: failed ones are only logged, with Meta's reason.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator, Mapping
from typing import Any

from visual_search.contrib.messaging.messages import FILE, OTHER, PHOTO, STICKER, TEXT, IncomingMessage, masked
from visual_search.logs import counted

logger = logging.getLogger("visual_search")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
# What a customer types for help in WhatsApp, where there are no /commands: answered as /help.
HELP_WORDS = {"help", "?", "hilfe", "aide", "/help"}
# Not worth an answer: a reaction to the bot's result, a system notice (a number changed).
IGNORED_TYPES = ("reaction", "system", "ephemeral")


def changes(body: Any) -> Iterator[dict]:
    """The ``value`` of each ``messages`` change in a delivery."""
    if not isinstance(body, dict) or body.get("object") != "whatsapp_business_account":
        return
    for entry in body.get("entry") or ():
        for change in (entry.get("changes") or ()) if isinstance(entry, dict) else ():
            if isinstance(change, dict) and change.get("field") == "messages" and isinstance(change.get("value"), dict):
                yield change["value"]


def incoming_messages(body: Any, phone_number_id: str, phone_languages: Mapping[str, str] | None = None) -> list[IncomingMessage]:
    """The customers' messages to the business number ``phone_number_id`` in a delivery. Messages to
    another number of the same WhatsApp account are left alone (logged): another app answers them."""
    found = []
    if not isinstance(phone_languages, Mapping):  # a malformed setting (visual_search_whatsapp.E005): no guess
        phone_languages = {}
    for value in changes(body):
        to = str(_dict(value.get("metadata")).get("phone_number_id") or "")
        messages = [m for m in value.get("messages") or () if isinstance(m, dict) and m.get("from")]
        if messages and to != str(phone_number_id):
            logger.info("WhatsApp: %s to phone number id %s, not the configured %s; ignored",
                        counted(len(messages), "message"), to, phone_number_id)
            continue
        for message in messages:
            if message.get("type") in IGNORED_TYPES:
                continue
            found.append(IncomingMessage(chat_id=str(message["from"]), event_id=str(message.get("id") or ""),
                                         language=language_of(str(message["from"]), phone_languages),
                                         **_content(message)))
        for status in value.get("statuses") or ():
            if isinstance(status, dict) and status.get("status") == "failed":
                # Not the message's id (wamid.HBgL...): it encodes the recipient's phone number.
                logger.warning("WhatsApp could not deliver a message to %s: %s", masked(status.get("recipient_id")),
                               describe_errors(status.get("errors")))
    return found


def _content(message: dict) -> dict[str, Any]:
    kind = message.get("type")
    wamid = str(message.get("id") or "")
    media = _dict(message.get(kind)) if isinstance(kind, str) else {}
    if kind == "image":
        # Quoted in the answer: a customer sending several photos sees which results answer which.
        return {"kind": PHOTO, "file_id": str(media.get("id") or ""), "mime_type": str(media.get("mime_type") or "image/jpeg"),
                "reply_to": wamid}
    if kind == "document":
        mime = document_type(media)
        image = mime.startswith("image/") if mime else str(media.get("filename") or "").lower().endswith(IMAGE_EXTENSIONS)
        return {"kind": PHOTO if image else FILE, "file_id": str(media.get("id") or ""), "mime_type": mime, "reply_to": wamid}
    if kind == "sticker":
        return {"kind": STICKER}
    if kind == "text":
        text = str(_dict(message.get("text")).get("body") or "")
        return {"kind": TEXT, "text": "/help" if text.strip().lower() in HELP_WORDS else text}
    return {"kind": OTHER}  # audio, video, location, contacts, buttons, unsupported...


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def document_type(document: dict) -> str:
    """The document's MIME type as WhatsApp gives it, else as its name says."""
    mime = str(document.get("mime_type") or "").lower()
    return mime or (mimetypes.guess_type(str(document.get("filename") or ""))[0] or "")


def language_of(wa_id: str, phone_languages: Mapping[str, str]) -> str:
    """WhatsApp tells no language: the ``PHONE_LANGUAGES`` entry for the longest calling-code prefix of
    the customer's number, else "" (the shop's ``LANGUAGE_CODE``)."""
    for prefix in sorted(phone_languages, key=len, reverse=True):
        if wa_id.startswith(str(prefix).lstrip("+")):
            return str(phone_languages[prefix])
    return ""


def describe_errors(errors: Any) -> str:
    if not isinstance(errors, list):
        return "no reason given"
    return "; ".join(f"{e.get('code')} {e.get('title') or e.get('message') or ''}".strip()
                     + (f" ({(e.get('error_data') or {}).get('details')})" if isinstance(e.get("error_data"), dict) else "")
                     for e in errors if isinstance(e, dict)) or "no reason given"
