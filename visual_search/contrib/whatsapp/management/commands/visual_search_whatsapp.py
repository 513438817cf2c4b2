"""manage.py visual_search_whatsapp info | subscribe WABA_ID"""

from __future__ import annotations

from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, no_translations

from ... import client
from ...client import GraphAPIError
from ...conf import SETTING, settings

NUMBER_FIELDS = "display_phone_number,verified_name,quality_rating,code_verification_status,platform_type,throughput"


class Command(BaseCommand):
    help = "Show what Meta knows of the shop's WhatsApp number (and whether the token works), or subscribe the app to a WhatsApp account."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{info,subscribe}")
        actions.add_parser("info", help="The number's name, quality and platform, as the Graph API reports them with the token.")
        subscribe = actions.add_parser("subscribe", help="Subscribe this app to a WhatsApp Business Account's webhooks.")
        subscribe.add_argument("waba_id", help="The WhatsApp Business Account ID (WhatsApp > API Setup)")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    def handle(self, *args, action, **options):
        try:
            getattr(self, "_" + action)(**options)
        except GraphAPIError as exc:
            raise CommandError(f"{exc}; {exc.advice()}") from exc
        except ConnectionError as exc:  # nothing was said of what to do about it
            raise CommandError(
                f"{type(exc).__name__}: {exc}. This machine did not get an answer from the Graph API: check that it "
                "reaches that URL over HTTPS (a firewall, a proxy), then run this command again."
            ) from exc
        except ImproperlyConfigured as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc

    def _info(self, **options):
        phone = settings.PHONE_NUMBER_ID
        if not phone:
            raise CommandError(f"{SETTING}['PHONE_NUMBER_ID'] is not set: copy the Phone number ID from WhatsApp > API Setup.")
        number = client.call("GET", f"{quote(str(phone))}?fields={NUMBER_FIELDS}")
        throughput = number.get("throughput")
        rows = [("number", str(number.get("display_phone_number") or "?")), ("name", str(number.get("verified_name") or "?")),
                ("quality", str(number.get("quality_rating") or "?")), ("verification", str(number.get("code_verification_status") or "?")),
                ("platform", str(number.get("platform_type") or "?")),
                ("throughput", str(throughput.get("level") if isinstance(throughput, dict) else throughput or "?"))]
        for name, value in rows:
            self.stdout.write(f"{name + ':':14}{value}")
        if number.get("platform_type") not in (None, "CLOUD_API"):
            self.stdout.write(self.style.WARNING(
                "The number is not registered for the Cloud API: register it (docs/whatsapp.md, 'When nothing arrives')."))
        self.stdout.write(self.style.SUCCESS("The access token works for this number."))

    def _subscribe(self, waba_id, **options):
        if not str(waba_id).isdigit():
            raise CommandError(f"{waba_id!r} is not a WhatsApp Business Account ID (digits, from WhatsApp > API Setup).")
        answer = client.call("POST", f"{waba_id}/subscribed_apps")
        if not answer.get("success"):
            raise CommandError(f"Meta did not confirm the subscription: {answer}")
        self.stdout.write(self.style.SUCCESS(f"This app now gets the webhooks of WhatsApp account {waba_id}."))
