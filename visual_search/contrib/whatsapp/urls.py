"""The webhook: ``path("whatsapp/", include("visual_search.contrib.whatsapp.urls"))`` serves
``whatsapp/webhook/``; give that full HTTPS URL to Meta's app dashboard (WhatsApp > Configuration)."""

from django.urls import re_path

from .views import WebhookView

app_name = "visual_search_whatsapp"

urlpatterns = [
    # With or without its slash: Meta follows no redirect (APPEND_SLASH's would silence the bot).
    re_path(r"^webhook/?$", WebhookView.as_view(), name="webhook"),
]
