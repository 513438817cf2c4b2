"""A messenger's settings: one dict per messenger (``VISUAL_SEARCH_TELEGRAM``...), read on every access.

The keys every messenger shares are :data:`COMMON`; an adapter adds its own (a token, an API URL).
They are kept apart from ``VISUAL_SEARCH``, whose keys and checks are the core's: a messenger's
app checks its own dict (see ``visual_search.contrib.telegram.checks``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings

# Where the slow part of a message runs (see .background); None: Celery when the project uses it.
BACKGROUNDS = ("celery", "thread", "inline")

COMMON: dict[str, Any] = {
    "RESULTS": 3,  # products sent back per photo
    "RATE": "10/min",  # messages per chat, in DRF's rate syntax; None: no limit
    "BACKGROUND": None,  # one of BACKGROUNDS, or None
    "QUEUE": None,  # the Celery queue; None: VISUAL_SEARCH["QUEUE"] (workers that have the model)
    "MODEL": None,  # "app_label.ModelName" to search; None: VISUAL_SEARCH's API_MODEL
    "SITE_URL": None,  # "https://shop.example": links in replies; None: the host Telegram called
}

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smhd])\w*\s*$")


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"10/min"`` -> ``(10, 60)``: messages and seconds; None for no limit. ValueError if malformed."""
    if rate is None:
        return None
    match = _RATE.match(str(rate))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{rate!r} is not a rate such as '10/min' (a number, '/', then s, min, hour or day)")
    return int(match.group(1)), _PERIODS[match.group(2)]


class MessengerSettings:
    """``settings.<name>`` over ``defaults``; ``conf.RESULTS`` reads the project's settings each time,
    so ``override_settings`` works."""

    def __init__(self, name: str, defaults: Mapping[str, Any]):
        self.name = name
        self.defaults = dict(defaults)

    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, self.name, None)
        return dict(value) if isinstance(value, Mapping) else {}

    def __getattr__(self, key: str) -> Any:
        if key.isupper() and key in self.defaults:
            return self.user_settings().get(key, self.defaults[key])
        raise AttributeError(f"{self.name} has no setting {key!r}")


def common_problems(conf: MessengerSettings) -> dict[str, str]:
    """``{key: what is wrong}`` for the shared keys (an adapter's checks report them with ids)."""
    problems = {}
    results = conf.RESULTS
    if isinstance(results, bool) or not isinstance(results, int) or not 1 <= results <= 10:
        problems["RESULTS"] = f"= {results!r}: expected a whole number from 1 to 10."
    try:
        parse_rate(conf.RATE)
    except ValueError as exc:
        problems["RATE"] = f"= {conf.RATE!r}: {exc}, or None."
    if conf.BACKGROUND is not None and conf.BACKGROUND not in BACKGROUNDS:
        problems["BACKGROUND"] = f"= {conf.BACKGROUND!r}: expected None or one of {', '.join(map(repr, BACKGROUNDS))}."
    for key in ("QUEUE", "MODEL"):
        if getattr(conf, key) is not None and not isinstance(getattr(conf, key), str):
            problems[key] = f"= {getattr(conf, key)!r}: expected a str or None."
    site = conf.SITE_URL
    if site is not None and not (isinstance(site, str) and re.match(r"^https?://[^/]+", site)):
        problems["SITE_URL"] = f"= {site!r}: expected None or an absolute URL such as 'https://shop.example'."
    return problems
