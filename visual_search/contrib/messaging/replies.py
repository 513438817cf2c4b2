"""What the bot says, in one place, and how one result reads in a chat (plain text: no markup to escape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _

from visual_search.widget import match_percent, written_price

# Telegram's limit for a photo's caption; WhatsApp's and Viber's are larger.
CAPTION_LIMIT = 1024


def welcome() -> str:
    return _("Hello! Send me a photo of a product and I will find it in our shop.")


def help_text() -> str:
    return _("I find products by photo: send me a photo of a product (a picture, or an image file).")


def usage() -> str:
    """The answer to /help: how to get a good answer, and what the "% match" of a result means."""
    return _("Send me a photo of a product, as a photo or as an image file (JPEG, PNG or WebP). Crop it to the "
             "product, or take it close up with little else in the picture: I compare the whole photo. Each "
             "result says how likely it is the product in your photo (\"87% match\"); when none is likely, I "
             "say so and show the closest ones.")


def sticker() -> str:
    return _("Nice sticker! I can only search with photos, though: send me a picture of a product.")


def not_an_image() -> str:
    return _("That file is not an image. Send a photo of the product (JPEG, PNG or WebP).")


def unreadable(kind: str = "") -> str:
    """A file the search cannot read: of a refused ``kind`` ("SVG", "HEIC"...), or damaged."""
    if kind:
        return _("%(format)s files are not accepted: send a photo of the product (JPEG, PNG or WebP).") % {"format": kind}
    return _("I could not read that image. Send a photo of the product (JPEG, PNG or WebP).")


def blank() -> str:
    return _("That photo looks blank. Take one with the product in view.")


def too_large(max_bytes: int) -> str:
    megabytes = max_bytes / (1024 * 1024)
    return _("That photo is too large: at most %(mb)g MB. Send it as a photo rather than as a file, or send a "
             "smaller one.") % {"mb": megabytes}


def please_wait() -> str:
    return _("You are sending messages faster than I can look: please wait a minute, then try again.")


def no_results() -> str:
    return _("I could not find anything like that in the shop. Try another photo, closer to the product.")


def unsure() -> str:
    return _("I am not sure I recognise it; these look the closest:")


def busy() -> str:
    """The search could not start: the shop's server runs as many searches as it takes (MAX_CONCURRENT_SEARCHES)."""
    return _("Many people are searching right now. Please send the photo again in a minute.")


def failed() -> str:
    return _("Sorry, something went wrong while searching. Please try again in a moment.")


def caption(item: Mapping[str, Any], rank: int) -> str:
    """``"1. Pink Lady — 12.90 SEK · 87% match"``, then the product's link on its own line; the price
    only when the shop's result adapter gives one, written as the web cards write it (a number with
    its currency's decimals: "12.90 SEK" for 12.9, "1200 JPY" for 1200.00; Oscar's "€3.10"), the match likewise."""
    title = f"{rank}. {item.get('name') or ''}"
    price = written_price(item)
    if price:
        title += f" — {price}"
    if item.get("score") is not None:
        title += f" · {match_percent(item['score'])}"
    link = item.get("url") or ""
    room = CAPTION_LIMIT - len(link) - 1
    if len(title) > room:
        title = title[: max(room - 1, 0)] + "…"
    return f"{title}\n{link}" if link else title


def joined(texts: list[str], limit: int) -> list[str]:
    """``texts`` in as few messages of at most ``limit`` characters as they fit, a blank line between."""
    messages: list[str] = []
    for text in texts:
        if messages and len(messages[-1]) + 2 + len(text) <= limit:
            messages[-1] += "\n\n" + text
        else:
            messages.append(text[:limit])
    return messages
