"""``settings.VISUAL_SEARCH_WHATSAPP``: the messaging keys every messenger has, and WhatsApp's own."""

from __future__ import annotations

from visual_search.contrib.messaging.conf import COMMON, MessengerSettings

SETTING = "VISUAL_SEARCH_WHATSAPP"

DEFAULTS = {
    **COMMON,
    # A System User's permanent token with whatsapp_business_messaging (Meta Business Settings); the
    # dashboard's temporary token works for 24 hours.
    "ACCESS_TOKEN": None,
    "PHONE_NUMBER_ID": None,  # the business number's id (not the number): WhatsApp > API Setup
    "APP_SECRET": None,  # App settings > Basic > App secret: signs each webhook delivery
    "VERIFY_TOKEN": None,  # any string you choose, typed again in the dashboard's webhook form
    # The Graph API: Meta's, at this version (the tests' fake one elsewhere).
    "API_URL": "https://graph.facebook.com",
    "API_VERSION": "v23.0",
    # After a rate limit (429, error 130429...), wait this many seconds at most, once; a longer wait
    # gives the reply up.
    "RETRY_AFTER_MAX": 5,
    "TIMEOUT": 10,  # seconds for each Graph API call (uploads and downloads: twice that)
    # WhatsApp does not tell a customer's language: the reply's language by the number's country
    # calling code, longest prefix first, e.g. {"49": "de", "41": "de", "33": "fr"}; else LANGUAGE_CODE.
    "PHONE_LANGUAGES": {},
}

# What WhatsApp accepts in an image message (sent by link or uploaded): JPEG or PNG, at most 5 MB.
IMAGE_TYPES = ("image/jpeg", "image/png")
IMAGE_SEND_LIMIT = 5 * 1024 * 1024

settings = MessengerSettings(SETTING, DEFAULTS)


def graph_url(path: str) -> str:
    """``{API_URL}/{API_VERSION}/{path}``."""
    return f"{str(settings.API_URL).rstrip('/')}/{str(settings.API_VERSION).strip('/')}/{path.lstrip('/')}"
