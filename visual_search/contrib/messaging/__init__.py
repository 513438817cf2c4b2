"""Search by photo in messaging apps: the part every messenger shares, done once.

A messenger (Telegram and WhatsApp now; Viber beside them later) is an adapter of three small jobs,
the :class:`~.messenger.Messenger` contract: turn the service's webhook payload into an
:class:`~.messages.IncomingMessage`, fetch a photo's bytes, and send text and results back.
Everything else lives here, so each adapter gets it the same way:

- :mod:`.inbox`: what the webhook does before it answers: drop a delivery seen before (services
  retry), count the chat against its rate limit, and hand the rest to the background;
- :mod:`.background`: where the slow part runs: a Celery task when the project uses Celery
  (:func:`visual_search.queue.use_celery`), else a thread, or inline (tests);
- :mod:`.handling`: the slow part: a helpful answer to what is not a photo, the size limits,
  the download, the search, the result cards (:func:`visual_search.results.describe`);
- :mod:`.replies`: the words the bot says and one result's caption;
- :mod:`.limits`: the per-chat rate limit and the "seen before" record, in Django's cache;
- :mod:`.conf`: a messenger's settings dict (``VISUAL_SEARCH_TELEGRAM``...), read on access;
- :mod:`.pictures`: whether a service can fetch a result's picture from its host, and its bytes from
  the shop's storage (the WhatsApp adapter uploads them).

Nothing here knows a messenger by name (an import-linter contract in pyproject.toml keeps it so).
See docs/telegram.md, "Adding another messenger".
"""
