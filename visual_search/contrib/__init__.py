"""Integrations, each an app of its own: ``visual_search.contrib.oscar`` (django-oscar),
``visual_search.contrib.messaging`` (search by photo in a messenger, whichever it is),
``visual_search.contrib.telegram`` (a Telegram bot over it) and ``visual_search.contrib.whatsapp``
(the WhatsApp Business Cloud API over it).

They sit above the rest of the package (the layers in pyproject.toml): they use its public functions
and templates, and nothing in ``visual_search`` imports them; messaging knows no messenger by name.
"""
