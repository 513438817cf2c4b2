"""manage.py visual_search_telegram set-webhook URL | delete-webhook | info"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, no_translations
from django.urls import NoReverseMatch, reverse
from telegram.error import NetworkError, TelegramError

from ... import client
from ...conf import settings

ALLOWED_UPDATES = ["message"]  # what the bot answers; Telegram then sends nothing else


class Command(BaseCommand):
    help = "Point the shop's Telegram bot at its webhook, remove the webhook, or show what Telegram knows of it."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{set-webhook,delete-webhook,info}")
        set_parser = actions.add_parser("set-webhook", help="Send updates to URL, with the SECRET as secret token.")
        set_parser.add_argument("url", help="The webhook's full HTTPS URL, e.g. https://shop.example/telegram/webhook/")
        delete_parser = actions.add_parser("delete-webhook", help="Stop sending updates to the webhook.")
        for sub in (set_parser, delete_parser):
            sub.add_argument("--drop-pending-updates", action="store_true", help="Forget the updates Telegram still holds.")
        actions.add_parser("info", help="The webhook's URL, pending updates and last error, as Telegram reports them.")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    def handle(self, *args, action, **options):
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except NetworkError as exc:  # a timeout too: nothing was said of what to do about it
            raise CommandError(
                f"{type(exc).__name__}: {exc}. This machine did not get an answer from Telegram's Bot API "
                f"at {str(settings.API_URL).rstrip('/')}: check that it reaches it over HTTPS (a firewall, a "
                "proxy), then run this command again."
            ) from exc
        except (TelegramError, ImproperlyConfigured) as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc

    def _set_webhook(self, url, drop_pending_updates=False, **options):
        if not url.startswith("https://"):
            raise CommandError(f"{url} is not an HTTPS URL: Telegram sends updates to HTTPS webhooks only.")
        if not settings.SECRET:
            raise CommandError("VISUAL_SEARCH_TELEGRAM['SECRET'] is not set: the webhook would refuse every update.")
        check_webhook_path(url)
        client.call(lambda bot: bot.set_webhook(url=url, secret_token=settings.SECRET, allowed_updates=ALLOWED_UPDATES,
                                                drop_pending_updates=drop_pending_updates))
        self.stdout.write(self.style.SUCCESS(f"Telegram now sends the bot's messages to {url}"))

    def _delete_webhook(self, drop_pending_updates=False, **options):
        client.call(lambda bot: bot.delete_webhook(drop_pending_updates=drop_pending_updates))
        kept = "the updates it held are dropped" if drop_pending_updates else "Telegram keeps the bot's messages until one is set"
        self.stdout.write(self.style.SUCCESS(f"Webhook removed: {kept}."))

    def _info(self, **options):
        info = client.call(lambda bot: bot.get_webhook_info())
        error = f"{info.last_error_message} ({info.last_error_date:%Y-%m-%d %H:%M})" if info.last_error_message else "-"
        rows = [("url", info.url or "(none)"), ("pending updates", str(info.pending_update_count)),
                ("allowed updates", ", ".join(info.allowed_updates or []) or "(all)"), ("last error", error)]
        for name, value in rows:
            self.stdout.write(f"{name + ':':17}{value}")


def check_webhook_path(url: str) -> None:
    """Refuse a URL whose path this project does not serve as the webhook: Telegram would post the
    customers' messages to a 404 (or a redirect, which it does not follow) and the bot would be silent.
    The path may have a prefix the project does not see (a proxy's, ``FORCE_SCRIPT_NAME``)."""
    try:
        served = reverse("visual_search_telegram:webhook")
    except NoReverseMatch:
        raise CommandError(
            "This project does not serve the webhook: add path(\"telegram/\", include(\"visual_search.contrib.telegram.urls\")) "
            "to your urlpatterns, then give its full HTTPS URL."
        ) from None
    wanted = served.rstrip("/")
    served = wanted + "/"  # reverse() leaves the optional slash out
    if not urlsplit(url).path.rstrip("/").endswith(wanted):
        raise CommandError(
            f"{url} is not the webhook: this project serves it at {served} (for instance "
            f"https://{urlsplit(url).netloc}{served}). Telegram would post the customers' messages where "
            "nothing answers them."
        )
