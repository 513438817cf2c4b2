"""Search by photo in WhatsApp (the WhatsApp Business Cloud API): add ``"visual_search.contrib.whatsapp"``
to INSTALLED_APPS (after ``visual_search``), set ``VISUAL_SEARCH_WHATSAPP = {"ACCESS_TOKEN": ...,
"PHONE_NUMBER_ID": ..., "APP_SECRET": ..., "VERIFY_TOKEN": ...}``, mount
``visual_search.contrib.whatsapp.urls`` and give its URL to Meta's app dashboard. No extra package:
the Graph API is called with the standard library. See docs/whatsapp.md.

- :mod:`.views`: the webhook (Meta's verification handshake; each delivery's signature checked);
- :mod:`.payload`: Meta's webhook JSON as :class:`~visual_search.contrib.messaging.messages.IncomingMessage` objects;
- :mod:`.messenger`: the adapter over the shared :mod:`visual_search.contrib.messaging` flow;
- :mod:`.client`: the Graph API calls, its errors explained, one retry after a rate limit;
- :mod:`.checks`: ``visual_search_whatsapp.E001``...
"""
