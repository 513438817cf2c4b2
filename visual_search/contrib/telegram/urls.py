"""The webhook: ``path("telegram/", include("visual_search.contrib.telegram.urls"))`` serves
``telegram/webhook/``; give that full HTTPS URL to ``manage.py visual_search_telegram set-webhook``."""

from django.urls import re_path

from .views import WebhookView

app_name = "visual_search_telegram"

urlpatterns = [
    # With or without its slash: a webhook set without it was redirected by APPEND_SLASH (a 500 for
    # a POST with DEBUG on, a 301 without), and Telegram follows no redirect: the bot went silent.
    re_path(r"^webhook/?$", WebhookView.as_view(), name="webhook"),
]
