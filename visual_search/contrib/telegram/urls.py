"""The webhook: ``path("telegram/", include("visual_search.contrib.telegram.urls"))`` serves
``telegram/webhook/``; give that full HTTPS URL to ``manage.py visual_search_telegram set-webhook``."""

from django.urls import path

from .views import WebhookView

app_name = "visual_search_telegram"

urlpatterns = [
    path("webhook/", WebhookView.as_view(), name="webhook"),
]
