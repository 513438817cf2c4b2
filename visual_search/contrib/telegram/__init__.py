"""Search by photo in Telegram: add ``"visual_search.contrib.telegram"`` to INSTALLED_APPS (after
``visual_search``), set ``VISUAL_SEARCH_TELEGRAM = {"TOKEN": ..., "SECRET": ...}``, mount
``visual_search.contrib.telegram.urls`` and run ``manage.py visual_search_telegram set-webhook URL``.
Needs python-telegram-bot: ``pip install "django-visual-search[telegram]"``. See docs/telegram.md.

- :mod:`.views`: the webhook (secret token checked, answers at once);
- :mod:`.updates`: Telegram's updates as :class:`~visual_search.contrib.messaging.messages.IncomingMessage`;
- :mod:`.messenger`: the adapter over the shared :mod:`visual_search.contrib.messaging` flow;
- :mod:`.client`: python-telegram-bot's ``Bot`` on the configured API URL, one 429 retry;
- :mod:`.checks`: ``visual_search_telegram.E001``...; ``manage.py visual_search_telegram``.
"""
