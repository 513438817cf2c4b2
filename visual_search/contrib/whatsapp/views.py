"""The webhook Meta calls: a GET to verify it (once, when the URL is saved in the dashboard), then a
POST for each delivery of messages and statuses. It answers at once; the search and the reply run later.

Every POST must carry ``X-Hub-Signature-256``, the HMAC-SHA256 of the raw body with the app secret:
one without it, or with a wrong one, answers 403 and does nothing else. A valid delivery always
answers 200 quickly, whatever it holds: Meta retries deliveries that fail or time out, for days.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from visual_search.contrib.messaging import inbox
from visual_search.contrib.messaging.site import webhook_site_url
from visual_search.contrib.messaging.messages import masked

from .messenger import WhatsAppMessenger
from .payload import incoming_messages

logger = logging.getLogger("visual_search")

SIGNATURE_HEADER = "HTTP_X_HUB_SIGNATURE_256"  # X-Hub-Signature-256: sha256=<hex>


def signature_matches(request: HttpRequest, app_secret: str | None) -> bool:
    """Whether the body is signed with the app secret; never true when none is configured."""
    sent = request.META.get(SIGNATURE_HEADER, "")
    if not app_secret or not sent.startswith("sha256="):
        return False
    expected = hmac.new(str(app_secret).encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sent[len("sha256="):].strip().lower().encode(), expected.encode())


@method_decorator(csrf_exempt, name="dispatch")  # Meta sends no CSRF token; the signature stands for it
class WebhookView(View):
    """GET: Meta's verification handshake. POST: one signed delivery; ``{}`` with 200."""

    http_method_names = ["get", "post"]  # noqa: RUF012 - Django's attribute, read-only
    messenger_class = WhatsAppMessenger

    def get(self, request: HttpRequest) -> HttpResponse:
        verify_token = self.messenger_class().settings.VERIFY_TOKEN
        mode, sent, challenge = (request.GET.get(f"hub.{key}", "") for key in ("mode", "verify_token", "challenge"))
        if mode == "subscribe" and verify_token and hmac.compare_digest(sent.encode(), str(verify_token).encode()):
            logger.info("WhatsApp webhook verified by Meta")
            return HttpResponse(challenge, content_type="text/plain")
        logger.warning("WhatsApp webhook: a verification request with %s, from %s",
                       "no VERIFY_TOKEN configured" if not verify_token else
                       "a wrong verify token" if mode == "subscribe" else f"hub.mode={mode!r}",
                       request.META.get("REMOTE_ADDR"))
        return HttpResponseForbidden("Wrong hub.verify_token or hub.mode.")

    def post(self, request: HttpRequest) -> HttpResponse:
        messenger = self.messenger_class()
        if not signature_matches(request, messenger.settings.APP_SECRET):
            logger.warning("WhatsApp webhook: a delivery %s, from %s; refused",
                           "while APP_SECRET is not configured" if not messenger.settings.APP_SECRET else
                           "with a wrong X-Hub-Signature-256 (is APP_SECRET this app's secret?)"
                           if request.META.get(SIGNATURE_HEADER) else "without X-Hub-Signature-256",
                           request.META.get("REMOTE_ADDR"))
            return HttpResponseForbidden("Wrong or missing X-Hub-Signature-256.")
        try:
            body = json.loads(request.body)
        except ValueError:
            return HttpResponseBadRequest("Not JSON.")
        site_url = messenger.settings.SITE_URL or webhook_site_url(request)
        try:
            messages = incoming_messages(body, str(messenger.settings.PHONE_NUMBER_ID or ""), messenger.settings.PHONE_LANGUAGES)
        except Exception:  # a payload of a shape not foreseen: logged, and 200, or Meta would send it again for days
            # Not the body itself: it holds customers' phone numbers, names and messages, which a log
            # (or an error tracker fed by it) would keep for as long as the shop keeps its logs.
            logger.exception("WhatsApp: could not read a delivery of %s bytes (its content is not logged: customers' "
                             "numbers and messages); answered 200, or Meta would send it again", len(request.body))
            return JsonResponse({})
        for message in messages:
            try:
                inbox.receive(messenger, message, site_url=site_url)
            except Exception:  # never a 500: Meta would deliver the whole batch again
                logger.exception("WhatsApp: could not take a message from %s", masked(message.chat_id))
        return JsonResponse({})
