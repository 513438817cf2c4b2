"""The webhook Telegram posts updates to. It answers at once; the search and the reply run later.

Telegram waits a short while for the answer and re-sends an update that got none (or an error), so
the view does only cheap things: the secret token, the JSON, "seen before", the rate limit. A wrong
or missing secret answers 403 and does nothing else, not even a call to Telegram.
"""

from __future__ import annotations

import hmac
import json
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from visual_search.contrib.messaging import inbox
from visual_search.contrib.messaging.site import webhook_site_url

from .messenger import TelegramMessenger
from .updates import incoming_message

logger = logging.getLogger("visual_search")

SECRET_HEADER = "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"  # X-Telegram-Bot-Api-Secret-Token


def secret_matches(request: HttpRequest, secret: str | None) -> bool:
    """Whether the request carries the configured secret; never true when none is configured."""
    sent = request.META.get(SECRET_HEADER, "")
    return bool(secret) and hmac.compare_digest(sent.encode(), str(secret).encode())


@method_decorator(csrf_exempt, name="dispatch")  # Telegram sends no CSRF token; the secret stands for it
class WebhookView(View):
    """POST only: one Telegram update as JSON; answers ``{}`` with 200 whenever the secret is right."""

    http_method_names = ["post"]  # noqa: RUF012 - Django's attribute, read-only
    messenger_class = TelegramMessenger

    def post(self, request: HttpRequest) -> HttpResponse:
        messenger = self.messenger_class()
        if not secret_matches(request, messenger.settings.SECRET):
            logger.warning("Telegram webhook: a request without the right secret token, from %s",
                           request.META.get("REMOTE_ADDR"))
            return HttpResponseForbidden("Wrong or missing X-Telegram-Bot-Api-Secret-Token.")
        try:
            update = json.loads(request.body)
        except ValueError:
            return HttpResponseBadRequest("Not JSON.")
        message = incoming_message(update, messenger.max_photo_bytes)
        if message is not None:
            inbox.receive(messenger, message, site_url=messenger.settings.SITE_URL or webhook_site_url(request))
        return JsonResponse({})
