"""System checks of ``VISUAL_SEARCH_WHATSAPP`` (ids ``visual_search_whatsapp.E001``...)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.conf import settings as django_settings
from django.core import checks

from visual_search.contrib.messaging.checks import adapter_problems, problem_messages, setting_error

from .conf import SETTING, settings

CHECK_IDS = {
    "visual_search_whatsapp.E001": "ACCESS_TOKEN is missing.",
    "visual_search_whatsapp.E002": "PHONE_NUMBER_ID is missing, or not the number's id (digits).",
    "visual_search_whatsapp.E003": "APP_SECRET is missing: every delivery is refused.",
    "visual_search_whatsapp.E004": "VERIFY_TOKEN is missing: Meta cannot verify the webhook.",
    "visual_search_whatsapp.E005": "Another key has a value of the wrong type or out of range.",
    "visual_search_whatsapp.W001": "A key that is not a setting (the message names the closest one).",
    "visual_search_whatsapp.W002": "BACKGROUND 'inline' without DEBUG: the webhook answers Meta only after the search.",
}


def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """ACCESS_TOKEN, PHONE_NUMBER_ID, APP_SECRET and VERIFY_TOKEN are required once the app is
    installed; every other key is validated."""
    messages = []
    if not (isinstance(settings.ACCESS_TOKEN, str) and settings.ACCESS_TOKEN.strip()):
        messages.append(setting_error(settings, "ACCESS_TOKEN", "is missing: the bot cannot fetch photos nor answer.",
                                      "Create a System User's permanent token with whatsapp_business_messaging in Meta Business "
                                      "Settings and set it from an environment variable (docs/whatsapp.md).",
                                      "visual_search_whatsapp.E001"))
    phone = settings.PHONE_NUMBER_ID
    if not (isinstance(phone, (str, int)) and not isinstance(phone, bool) and str(phone).isdigit()):
        shown = "is missing" if not phone else "is not a phone number id (digits)"
        messages.append(setting_error(settings, "PHONE_NUMBER_ID", f"{shown}: the bot answers from that number, and only its messages.",
                                      "Copy the 'Phone number ID' (not the phone number) from WhatsApp > API Setup in the app's dashboard.",
                                      "visual_search_whatsapp.E002"))
    if not (isinstance(settings.APP_SECRET, str) and settings.APP_SECRET.strip()):
        messages.append(setting_error(settings, "APP_SECRET", "is missing: the webhook refuses every delivery, as it cannot check Meta's signature.",
                                      "Copy the App secret from App settings > Basic in the app's dashboard.",
                                      "visual_search_whatsapp.E003"))
    if not (isinstance(settings.VERIFY_TOKEN, str) and settings.VERIFY_TOKEN.strip()):
        messages.append(setting_error(settings, "VERIFY_TOKEN", "is missing: Meta cannot verify the webhook's URL.",
                                      "Set a long random string, e.g. python -c \"import secrets; print(secrets.token_urlsafe(32))\", "
                                      "and type the same in WhatsApp > Configuration > Webhook.",
                                      "visual_search_whatsapp.E004"))
    if settings.BACKGROUND == "inline" and not django_settings.DEBUG:
        messages.append(checks.Warning(
            f"{SETTING}['BACKGROUND'] = 'inline': the webhook answers Meta only after fetching, searching and replying "
            "(seconds); Meta retries deliveries it waits too long for, and the customer waits with the web process.",
            hint="Leave BACKGROUND out (None): Celery when the project uses it, else a thread. 'inline' is for tests.",
            id="visual_search_whatsapp.W002"))
    return messages + _other_keys()


def _other_keys() -> list[checks.CheckMessage]:
    problems = adapter_problems(settings)
    version = settings.API_VERSION
    if not (isinstance(version, str) and re.match(r"^v\d+\.\d+$", version)):
        problems["API_VERSION"] = f"= {version!r}: expected a Graph API version such as 'v23.0'."
    languages = settings.PHONE_LANGUAGES
    if not (isinstance(languages, Mapping) and all(str(k).lstrip("+").isdigit() and isinstance(v, str) for k, v in languages.items())):
        problems["PHONE_LANGUAGES"] = f"= {languages!r}: expected a dict of calling codes to language codes, such as {{'49': 'de'}}."
    return problem_messages(settings, problems, error_id="visual_search_whatsapp.E005",
                            warning_id="visual_search_whatsapp.W001", docs="docs/whatsapp.md")
