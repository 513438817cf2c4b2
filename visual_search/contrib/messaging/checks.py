"""What every messenger's system checks share: the keys each adapter has beside :data:`~.conf.COMMON`
(its API's URL, its timeouts), and how a problem with a key becomes a message.

Each adapter's ``checks`` module keeps its own ids (``visual_search_telegram.E003``...) and its
required keys (a token, a secret); the wording of everything else is said once, here.
"""

from __future__ import annotations

import re

from django.core import checks

from visual_search.conf import did_you_mean

from .conf import MessengerSettings, common_problems


def setting_error(conf: MessengerSettings, key: str, problem: str, hint: str, id: str) -> checks.Error:
    """``VISUAL_SEARCH_TELEGRAM['TOKEN'] is missing...``: an error naming the key to fix."""
    return checks.Error(f"{conf.name}[{key!r}] {problem}", hint=hint, id=id)


def adapter_problems(conf: MessengerSettings) -> dict[str, str]:
    """``{key: what is wrong}`` for the shared keys and those every adapter has: ``API_URL`` (an
    absolute URL, the default given as the example), ``RETRY_AFTER_MAX`` and ``TIMEOUT`` (seconds)."""
    problems = common_problems(conf)
    api_url = conf.API_URL
    if not (isinstance(api_url, str) and re.match(r"^https?://[^/]+", api_url)):
        problems["API_URL"] = f"= {api_url!r}: expected an absolute URL such as {conf.defaults['API_URL']!r}."
    for key in ("RETRY_AFTER_MAX", "TIMEOUT"):
        value = getattr(conf, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems[key] = f"= {value!r}: expected a number of seconds, at least 0."
    return problems


def problem_messages(conf: MessengerSettings, problems: dict[str, str], *, error_id: str, warning_id: str,
                     docs: str) -> list[checks.CheckMessage]:
    """An error (``error_id``) for each of ``problems``, hinting at the key's default, and a warning
    (``warning_id``) for each key of the project's dict that is not a setting, naming the closest
    one and the page (``docs``) that lists them."""
    messages = [setting_error(conf, key, problem, f"Leave it out for the default, {conf.defaults[key]!r}.", error_id)
                for key, problem in problems.items()]
    for key in sorted(set(conf.user_settings()) - set(conf.defaults)):
        messages.append(checks.Warning(f"{conf.name}[{key!r}] is not a setting{did_you_mean(key, conf.defaults) or '.'}",
                                       hint=f"Remove it ({docs} lists the settings).", id=warning_id))
    return messages
